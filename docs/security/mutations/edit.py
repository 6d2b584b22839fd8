"""The one edit every mutation batch makes (docs/security/VERIFIED.md)."""


def sub(p, old, new):
    """Replaces the first `old` in file `p` with `new`; fails if `old` is not there."""
    s = open(p).read()
    assert old in s, (p, old[:60])
    open(p, 'w').write(s.replace(old, new, 1))
