"""Build-time grammar compiler: ISO XSDs -> EXI grammar tables and typed message classes (exi/generated).

Needs the `xmlschema` package (dev extra); the runtime codec never imports this package.
"""
