//! Daemons that restart, crash, upgrade or never come back, under tasks that keep reading
//! (issue 13): the FUSE connection outlives them through the keeper.

mod harness;
mod mount;
mod provisioner;
