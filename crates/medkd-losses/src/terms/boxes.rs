//! The box terms of localization tasks, each averaging a per-box loss between the decoded head
//! outputs and the true boxes ([`crate::boxes`]):
//! - `kind = "box_l1"`: L1 distance summed over the four normalized coordinates ([`crate::box_l1`]);
//! - `kind = "giou"`: 1 - generalized IoU ([`crate::giou_loss`], torchvision's
//!   `generalized_box_iou_loss`).

use serde::{Deserialize, Serialize};

use crate::boxes::BoxTerm;
use crate::term::{LossTerm, Needs, TermSpec};
use crate::{LossError, TaskFacts, box_l1, giou_loss};

/// A spec with only a weight, whose term is a [`BoxTerm`] over `$loss`.
macro_rules! box_term_spec {
    ($(#[$doc:meta])* $spec:ident, $kind:literal, $loss:path) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(deny_unknown_fields)]
        pub struct $spec {
            #[serde(default = "crate::spec::unit_weight")]
            pub weight: f64,
        }

        impl TermSpec for $spec {
            fn kind(&self) -> &'static str {
                $kind
            }

            fn weight(&self) -> f64 {
                self.weight
            }

            fn reads_boxes(&self) -> bool {
                true
            }

            fn resolve(&self, _facts: &TaskFacts, _needs: &mut Needs) -> Result<Box<dyn LossTerm>, LossError> {
                Ok(Box::new(BoxTerm { loss: $loss }))
            }
        }
    };
}

box_term_spec!(
    /// `kind = "box_l1"`.
    BoxL1Spec, "box_l1", box_l1
);
box_term_spec!(
    /// `kind = "giou"`.
    GiouSpec, "giou", giou_loss
);
