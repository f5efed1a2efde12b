//! `check`: every object reachable from the manifest exists, has the right hash and
//! decompresses; catalogs are consistent with each other. Collects every problem.
