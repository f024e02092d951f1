"""Development tools: code that helps build, measure and test messenger but is not part of it.

``devtools.loadgen`` is the bulk loader behind ``manage.py seed_data --users N --chats M
--messages K``, the data sets the benchmarks (``bench/``) run against.

Not in the production image: ``.dockerignore`` leaves ``devtools/`` out, like ``tests/`` and
``bench/``. ``messenger/settings.py`` installs this app exactly when the package is there
(a checkout, CI, a benchmark host), so ``django.apps.apps.is_installed("devtools")`` is
the one question the product asks. ``seed_data`` imports the loader only after that
answer is yes and otherwise refuses the bulk options with a ``CommandError`` that says
the loader is a development tool; its demo mode needs nothing from here.

Nothing in the product (``accounts``, ``chats``, ``messenger``, ``webclient``) imports this
package at module level.
"""
