//! Container images in.

mod layers;
