//! The `[method]` section of a run config: each method's own keys. A leaf module (serde only), so
//! that `crate::config` can name the methods' sections while the methods read `RunConfig`
//! without an import loop.

use serde::{Deserialize, Serialize};

/// The `[method]` table of a run config: which method runs on the loop (`kind`) and that method's
/// own keys. Absent, the method is `classify`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MethodConfig {
    /// Supervised classification with the config's loss terms and optional frozen teachers.
    Classify(ClassifyConfig),
}

impl Default for MethodConfig {
    fn default() -> Self {
        MethodConfig::Classify(ClassifyConfig::default())
    }
}

impl MethodConfig {
    pub fn is_default(&self) -> bool {
        *self == MethodConfig::default()
    }
}

/// `[method] kind = "classify"`: no keys of its own; the objective is the config's `[[loss]]`
/// terms and the teachers its `[[teacher]]` entries.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClassifyConfig {}
