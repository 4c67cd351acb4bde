use serde::{Deserialize, Serialize};

use crate::LossError;
use crate::term::TermSpec;
use crate::terms::{
    attention::AttentionSpec,
    balanced_softmax::BalancedSoftmaxSpec,
    bce::BceSpec,
    boxes::{BoxL1Spec, GiouSpec},
    channel_gram::ChannelGramSpec,
    class_balanced::ClassBalancedSpec,
    cross_entropy::CrossEntropySpec,
    focal::FocalSpec,
    hint::HintSpec,
    kd::KdSpec,
    kd_rotated::KdRotatedSpec,
    ldam::LdamSpec,
    rkd_angle::RkdAngleSpec,
    rkd_distance::RkdDistanceSpec,
    sskd::SskdSpec,
    subset_kd::SubsetKdSpec,
};

/// Declares [`LossSpec`], one `[[loss]]` entry of a config: a term kind (`kind = "..."`), its
/// weight in the total and its parameters. The enum is the registry of loss terms: a term is
/// registered by one line, which also routes it through [`LossSpec::term_spec`].
macro_rules! loss_spec {
    ($($(#[$doc:meta])* $variant:ident($spec:ty),)*) => {
        #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
        #[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
        pub enum LossSpec {
            $($(#[$doc])* $variant($spec),)*
        }

        impl LossSpec {
            /// The term's spec.
            pub fn term_spec(&self) -> &dyn TermSpec {
                match self {
                    $(LossSpec::$variant(spec) => spec,)*
                }
            }
        }
    };
}

loss_spec! {
    /// Softmax cross-entropy with optional class weights and label smoothing.
    CrossEntropy(CrossEntropySpec),
    /// Binary cross-entropy on logits (multi-label tasks).
    Bce(BceSpec),
    /// Hinton soft-target KD from the teachers' logits.
    Kd(KdSpec),
    /// Park et al. (2019) RKD angle term on the pooled embeddings of one teacher.
    RkdAngle(RkdAngleSpec),
    /// Attention transfer (Zagoruyko & Komodakis 2017) between stage maps.
    Attention(AttentionSpec),
    /// FitNets hint: mean squared error between (regressed) student and teacher stage maps.
    Hint(HintSpec),
    /// SSD-KD's channel-relation term: RMSE between channel Gram matrices of a stage map.
    ChannelGram(ChannelGramSpec),
    /// SSKD's rotated-view KD (SSD-KD's L3). Turns on rotated views for the whole objective.
    KdRotated(KdRotatedSpec),
    /// SSKD's self-supervised similarity KD (SSD-KD's L4). Turns on rotated views.
    Sskd(SskdSpec),
    /// Park et al. (2019) RKD distance term on the pooled embeddings of one teacher.
    RkdDistance(RkdDistanceSpec),
    /// Focal loss (Lin et al. 2017) with optional per-class alpha.
    Focal(FocalSpec),
    /// Cross-entropy weighted by effective numbers of samples (Cui et al. 2019).
    ClassBalanced(ClassBalancedSpec),
    /// Cross-entropy on prior-adjusted logits (balanced softmax / logit adjustment).
    BalancedSoftmax(BalancedSoftmaxSpec),
    /// LDAM margins (Cao et al. 2019) with optional deferred re-weighting.
    Ldam(LdamSpec),
    /// Relational subsets KD (Ju et al. 2021): each per-subset teacher supervises the student's
    /// logits of its classes.
    SubsetKd(SubsetKdSpec),
    /// L1 distance between predicted and true boxes (localization).
    BoxL1(BoxL1Spec),
    /// 1 - generalized IoU between predicted and true boxes (localization).
    Giou(GiouSpec),
}

pub(crate) fn unit_weight() -> f64 {
    1.0
}

impl LossSpec {
    /// The name the term is logged under (`metrics.jsonl`, progress bar).
    pub fn name(&self) -> &'static str {
        self.term_spec().kind()
    }

    pub fn weight(&self) -> f64 {
        self.term_spec().weight()
    }

    /// Checks parameters that do not depend on the data (weights, ranges).
    pub fn validate(&self) -> Result<(), LossError> {
        let weight = self.weight();
        if !(weight.is_finite() && weight >= 0.0) {
            return Err(LossError::bad(self.name(), format!("weight must be a finite number >= 0, got {weight}")));
        }
        self.term_spec().validate()
    }
}
