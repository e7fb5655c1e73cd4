"""Give mkdocstrings the language of the page being built.

mkdocstrings reads ``theme.language`` once, before mkdocs-static-i18n switches it for
each language build, so the Chinese API pages would keep English section labels.
This hook runs after static-i18n's ``on_config`` (priority -100) on every language
build and hands the current language to the handlers. It touches a private attribute
(mkdocstrings 1.0); tests/test_site.py checks the Chinese labels so a change breaks
the build loudly instead of silently.
"""

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.plugins import event_priority


@event_priority(-110)
def on_config(config: MkDocsConfig) -> MkDocsConfig:
    plugin = config.plugins.get("mkdocstrings")
    handlers = getattr(plugin, "_handlers", None)
    if handlers is not None:
        handlers._locale = str(config.theme["language"]).replace("_", "-")
    return config
