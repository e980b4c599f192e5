"""Kaggle's naming rules for what a package declares: the user, the dataset slug, the title."""
from __future__ import annotations

import re

_SLUG_RE = re.compile(r"^[a-z0-9](?:[a-z0-9-]*[a-z0-9])?$")
_USER_RE = re.compile(r"^[a-z0-9](?:[a-z0-9_-]*[a-z0-9])?$")
#: The kernel's slug is the dataset's plus this suffix.
KERNEL_SUFFIX = "-inference"


def validate_user(user: str) -> str:
    """Check a Kaggle user name (lowercase letters, digits, ``-``/``_`` inside); returns it."""
    if not isinstance(user, str) or not _USER_RE.match(user) or len(user) > 50:
        raise ValueError(f"Kaggle user {user!r} is not valid: use the lowercase user name shown in your "
                         "Kaggle profile URL (letters, digits, '-' or '_')")
    return user


def validate_slug(slug: str) -> str:
    """Check a dataset slug: 6–40 characters of lowercase letters, digits and inner hyphens.

    Kaggle accepts 6–50; 40 leaves room for the kernel's ``<slug>-inference``.
    """
    if not isinstance(slug, str) or not _SLUG_RE.match(slug) or "--" in slug:
        raise ValueError(f"slug {slug!r} is not valid: lowercase letters, digits and single hyphens, "
                         "not starting or ending with a hyphen (e.g. 'bengali-effnet-b0')")
    if not 6 <= len(slug) <= 40:
        raise ValueError(f"slug {slug!r} has {len(slug)} characters; Kaggle needs 6–50 and the kernel id "
                         f"adds '{KERNEL_SUFFIX}', so use 6–40")
    return slug


def validate_title(title: str | None, slug: str) -> str:
    """The dataset title (default: from the slug); Kaggle wants 6–50 characters."""
    title = title or f"{slug.replace('-', ' ')} model"
    if not 6 <= len(title) <= 50:
        raise ValueError(f"title {title!r} must have 6–50 characters (Kaggle's rule)")
    return title
