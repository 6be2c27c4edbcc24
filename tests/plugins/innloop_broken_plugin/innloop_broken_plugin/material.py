"""A material module that cannot be imported, as when a plugin's native library is missing."""

raise ImportError("innloop_broken_plugin needs libdemo.so, which is not installed")
