"""Checkout-only test helpers (they read tests/, tools/ and configs/), imported
as ``helpers.*``: pytest puts tests/ on the path for tests/conftest.py, and
:func:`helpers.checkout.checkout_env` puts it on child processes' path."""
