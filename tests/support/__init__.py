"""What the tests share: sysfs trees to read (:mod:`tests.support.trees`) and
simulated machines to act on (:mod:`tests.support.sim`)."""
