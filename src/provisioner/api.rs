//! The control API's messages, generated from proto/lazyroot/v1/control.proto.

include!(concat!(env!("OUT_DIR"), "/lazyroot.v1.rs"));

/// The HTTP route of a control method: `POST /lazyroot.v1.Control/<Method>`.
pub fn route(method: &str) -> String {
    format!("/lazyroot.v1.Control/{method}")
}
