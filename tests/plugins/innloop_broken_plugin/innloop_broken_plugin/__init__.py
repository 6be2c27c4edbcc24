"""A deliberately broken innloop plugin: importing the package works, its entry points do not."""
