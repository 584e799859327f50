"""Reference systems. Each module registers its factories with ``@register_system``.

Modules here must stay cheap to import: heavy libraries are imported inside
the factories or the systems' methods, so ``talkwalk-bench list`` is instant.
"""
