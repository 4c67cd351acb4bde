//! Loss terms in the [`crate::term::TermSpec`] shape, one file each.

pub mod rkd_distance;
