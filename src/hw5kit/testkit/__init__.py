"""Test tooling the kit ships for its users, outside the serving runtime (no backend imports it).

* ``badinputs``: the bad-input catalog (``CATALOG``), the limits its backend runs with, and the
  documentation's error tables (``python -m hw5kit.testkit.badinputs docs``);
* ``hostile``: the loopback server whose routes misbehave on purpose, the catalog's remote end.

The live tests and the load session (``python -m hw5kit.loadtest``) use them.
"""
