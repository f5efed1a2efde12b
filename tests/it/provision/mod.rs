//! The provisioner daemon end to end, as a Mesos agent would use it, without the agent:
//! images prepared over the control socket, appc store entries read as Mesos's appc store
//! reads them, bind and overlay mounts as its provisioner backends make them, tasks run
//! with runc, restarts, leaks, bad input.

mod bad_input;
mod bookworm;
mod csi_volumes;
mod cycles;
mod discovery;
mod e2e;
pub mod harness;
mod ingested;
mod isolator_client;
mod lanes;
mod launches;
