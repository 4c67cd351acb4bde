//! The loss terms, one file each in the [`crate::term::TermSpec`] shape, registered in
//! `loss_spec!` (spec.rs).

pub mod attention;
pub mod balanced_softmax;
pub mod bce;
pub mod boxes;
pub mod channel_gram;
pub mod class_balanced;
pub mod cross_entropy;
pub mod focal;
pub mod hint;
pub mod kd;
pub mod kd_rotated;
pub mod ldam;
pub mod rkd_angle;
pub mod rkd_distance;
pub mod sskd;
pub mod subset_kd;
