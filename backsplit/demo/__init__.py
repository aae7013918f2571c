"""The demo: CT-like cases synthesised from the real KiTS23 label maps shipped with the package."""
