//! medkd's training engine: config, the one training loop ([`engine`]) and the methods that run
//! on it ([`method`], [`methods`]), evaluation, checkpoints and the run folder contract.

pub mod attack;
pub mod averaging;
pub mod build_info;
pub mod checkpoint;
pub mod checksum;
pub mod config;
pub mod device;
pub mod engine;
mod error;
pub mod evaluate;
pub mod gallery;
pub mod htl;
pub mod knn;
pub mod method;
pub mod methods;
pub mod optim;
pub mod pretrained;
pub mod roskd;
pub mod rounds;
pub mod rskd;
pub mod run_dir;
pub mod schedule;
pub mod setup;
pub mod sparse;
pub mod stages;
pub mod summary;
pub mod teacher_head;
pub mod teachers;

pub use config::RunConfig;
pub use engine::Outcome;
pub use error::TrainError;
pub use methods::train;
pub use run_dir::RunDir;
pub use setup::{Prepared, RunSetup, parse_split};
pub use summary::Summary;
pub use teachers::{Teacher, load_teachers};
