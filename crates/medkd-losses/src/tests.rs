use std::sync::LazyLock;

use burn::prelude::*;
use medkd_models::{Arch, FeatureLayout, MapInfo, MapKind, Model, ModelSpec};

use super::*;
use crate::objective::{TaskFacts, TeacherFacts};
use crate::terms::{
    attention::AttentionSpec, bce::BceSpec, channel_gram::ChannelGramSpec, cross_entropy::CrossEntropySpec, hint::HintSpec, kd::KdSpec,
    rkd_angle::RkdAngleSpec,
};

fn names(k: usize) -> Vec<String> {
    (0..k).map(|c| format!("class{c}")).collect()
}

fn facts<'a>(names: &'a [String], counts: &'a [usize], multi_label: bool) -> TaskFacts<'a> {
    TaskFacts {
        num_classes: names.len(),
        multi_label,
        boxes: false,
        class_names: names,
        class_counts: counts,
        student: &RESNET18,
        teachers: &[],
        seed: 0,
    }
}

fn layout(arch: Arch) -> FeatureLayout {
    let spec = ModelSpec { small_input: true, ..ModelSpec::new(arch, 3) };
    Model::new(&spec, &medkd_models::test_device()).unwrap().layout()
}

static RESNET18: LazyLock<FeatureLayout> = LazyLock::new(|| layout(Arch::ResNet18));

/// A teacher of this layout that predicts the 3 classes of `names(3)`.
fn teacher(layout: &FeatureLayout) -> TeacherFacts {
    TeacherFacts { layout: layout.clone(), class_names: names(3) }
}

/// `n` ResNet-18 teachers of `names(3)`.
fn resnet18_teachers(n: usize) -> Vec<TeacherFacts> {
    vec![teacher(&RESNET18); n]
}

#[test]
fn inverse_frequency_weights_are_total_over_count() {
    let weights = inverse_frequency_weights(&[10, 30, 60], &names(3)).unwrap();
    assert_eq!(weights, vec![10.0, 100.0 / 30.0, 100.0 / 60.0]);
    let error = inverse_frequency_weights(&[10, 0], &names(2)).unwrap_err().to_string();
    assert!(error.contains("class1") && error.contains("no sample"), "{error}");
}

#[test]
fn objective_rejects_terms_that_do_not_fit_the_task() {
    let names = names(3);
    let ce = LossSpec::CrossEntropy(CrossEntropySpec { weight: 1.0, label_smoothing: 0.0, class_weights: ClassWeights::default() });
    let error = Objective::new(&[ce], &facts(&names, &[1, 1, 1], true)).err().unwrap().to_string();
    assert!(error.contains("cross_entropy") && error.contains("multi-label"), "{error}");
    let error = Objective::new(&[LossSpec::Bce(BceSpec { weight: 1.0 })], &facts(&names, &[1, 1, 1], false)).err().unwrap().to_string();
    assert!(error.contains("bce") && error.contains("single-label"), "{error}");
    let wrong_length = LossSpec::CrossEntropy(CrossEntropySpec {
        weight: 1.0,
        label_smoothing: 0.0,
        class_weights: ClassWeights::Explicit(vec![1.0, 2.0]),
    });
    let error = Objective::new(&[wrong_length], &facts(&names, &[1, 1, 1], false)).err().unwrap().to_string();
    assert!(error.contains("2 weights for 3 classes"), "{error}");
    assert!(Objective::new(&[], &facts(&names, &[1, 1, 1], false)).is_err());
}

#[test]
fn spec_parses_and_rejects_unknown_fields() {
    #[derive(serde::Deserialize)]
    struct Doc {
        loss: Vec<LossSpec>,
    }
    let doc: Doc = from_json(
        r#"{"loss": [{"kind": "cross_entropy", "class_weights": "inverse_frequency"}, {"kind": "cross_entropy", "class_weights": [1.0, 2.0], "weight": 0.5}]}"#,
    );
    assert_eq!(
        doc.loss[0],
        LossSpec::CrossEntropy(CrossEntropySpec {
            weight: 1.0,
            label_smoothing: 0.0,
            class_weights: ClassWeights::Rule(ClassWeightRule::InverseFrequency)
        })
    );
    assert_eq!(doc.loss[1].weight(), 0.5);
    assert!(serde_json::from_str::<Doc>(r#"{"loss": [{"kind": "cross_entropy", "temperature": 4}]}"#).is_err());
    assert!(serde_json::from_str::<Doc>(r#"{"loss": [{"kind": "cross_entropy", "class_weights": "balanced"}]}"#).is_err());
}

#[test]
fn long_tail_terms_check_their_parameters_and_task() {
    let spec = |json: &str| from_json::<LossSpec>(json);
    // Defaults.
    let defaults = |json: &str| serde_json::to_value(spec(json)).unwrap();
    assert_eq!(defaults(r#"{"kind": "focal"}"#), serde_json::json!({"kind": "focal", "weight": 1.0, "gamma": 2.0}));
    assert_eq!(defaults(r#"{"kind": "class_balanced"}"#)["beta"], 0.999);
    assert_eq!(defaults(r#"{"kind": "balanced_softmax"}"#)["tau"], 1.0);
    assert_eq!(defaults(r#"{"kind": "ldam"}"#), serde_json::json!({"kind": "ldam", "weight": 1.0, "max_margin": 0.5, "scale": 30.0}));
    // Out-of-range values are errors naming the key and its range.
    for (json, message) in [
        (r#"{"kind": "focal", "gamma": -0.5}"#, "gamma must be a finite number >= 0, got -0.5"),
        (r#"{"kind": "focal", "alpha": [1.0, 0.0, 2.0]}"#, "alpha must all be > 0, got 0"),
        (r#"{"kind": "class_balanced", "beta": 1.0}"#, "beta must be in [0, 1), got 1"),
        (r#"{"kind": "class_balanced", "beta": -0.1}"#, "beta must be in [0, 1), got -0.1"),
        (r#"{"kind": "balanced_softmax", "tau": -1.0}"#, "tau must be a finite number >= 0, got -1"),
        (r#"{"kind": "ldam", "max_margin": 0.0}"#, "max_margin must be a finite number > 0, got 0"),
        (r#"{"kind": "ldam", "scale": -30.0}"#, "scale must be a finite number > 0, got -30"),
    ] {
        let spec = spec(json);
        let error = spec.validate().unwrap_err().to_string();
        assert!(error.contains(spec.name()) && error.contains(message), "{json}: {error}");
    }
    for json in
        [r#"{"kind": "class_balanced", "loss": "focal"}"#, r#"{"kind": "ldam", "drw_epoch": -1}"#, r#"{"kind": "focal", "alpha": "none"}"#]
    {
        assert!(serde_json::from_str::<LossSpec>(json).is_err(), "{json}");
    }
    // Single-label tasks only; the count-based terms need every class in the training split.
    let names = names(3);
    let kinds = ["focal", "class_balanced", "balanced_softmax", "ldam"];
    for kind in kinds {
        let term = spec(&format!(r#"{{"kind": "{kind}"}}"#));
        let error = Objective::new(std::slice::from_ref(&term), &facts(&names, &[5, 2, 1], true)).err().unwrap().to_string();
        assert!(error.contains(kind) && error.contains("multi-label"), "{error}");
        let missing = Objective::new(&[term], &facts(&names, &[5, 0, 1], false));
        if kind == "focal" {
            assert!(missing.is_ok());
        } else {
            let error = missing.err().unwrap().to_string();
            assert!(error.contains(kind) && error.contains("class 'class1' has no sample"), "{error}");
        }
    }
    let error =
        Objective::new(&[spec(r#"{"kind": "focal", "alpha": [1.0, 2.0]}"#)], &facts(&names, &[1, 1, 1], false)).err().unwrap().to_string();
    assert!(error.contains("alpha lists 2 weights for 3 classes"), "{error}");
}

#[test]
fn class_balanced_weights_sum_to_the_number_of_classes() {
    assert_eq!(class_balanced_weights(&[100, 10, 1], 0.0), vec![1.0, 1.0, 1.0]);
    let weights = class_balanced_weights(&[100, 10, 1], 0.99);
    assert!((weights.iter().sum::<f32>() - 3.0).abs() < 1e-6, "{weights:?}");
    assert!(weights[0] < weights[1] && weights[1] < weights[2], "{weights:?}");
}

fn from_json<T: serde::de::DeserializeOwned>(json: &str) -> T {
    serde_json::from_str(json).unwrap()
}

#[test]
fn objective_total_is_the_weighted_sum_of_terms() {
    let device = medkd_models::test_device();
    let model = Model::new(&ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet18, 3) }, &device).unwrap();
    let images = burn::prelude::Tensor::<4>::zeros([2, 3, 8, 8], &device);
    let student = model.valid().forward(images);
    let names = names(3);
    let specs = [
        LossSpec::CrossEntropy(CrossEntropySpec { weight: 0.25, label_smoothing: 0.0, class_weights: ClassWeights::default() }),
        LossSpec::CrossEntropy(CrossEntropySpec {
            weight: 2.0,
            label_smoothing: 0.1,
            class_weights: ClassWeights::Rule(ClassWeightRule::InverseFrequency),
        }),
    ];
    let objective = Objective::new(&specs, &facts(&names, &[5, 3, 2], false)).unwrap();
    let targets = Targets::Classes(vec![0, 2]);
    let (total, terms) = objective.compute(&LossContext::student_only(&student, &targets, 0)).unwrap();
    let values: Vec<f32> = terms.into_iter().map(|t| t.value.into_scalar::<f32>()).collect();
    let total = total.into_scalar::<f32>();
    assert!((total - (0.25 * values[0] + 2.0 * values[1])).abs() < 1e-5, "{total} vs {values:?}");
    assert_ne!(values[0], values[1], "class weights and smoothing change the term");
}

fn features(model: &Model, seed: u64) -> Features {
    let device = medkd_models::test_device();
    device.seed(seed);
    let images = Tensor::<4>::random([4, 3, 16, 16], burn::tensor::Distribution::Normal(0.0, 1.0), &device);
    model.valid().forward(images)
}

fn kd_objective(teachers: TeacherMix, num_teachers: usize) -> Result<Objective, LossError> {
    let names = names(3);
    let spec = LossSpec::Kd(KdSpec { weight: 1.0, temperature: 2.0, teachers });
    Objective::new(&[spec], &TaskFacts { teachers: &resnet18_teachers(num_teachers), seed: 7, ..facts(&names, &[1, 1, 1], false) })
}

fn kd_value(objective: &Objective, student: &Features, teachers: &[Features], step: u64) -> f32 {
    let targets = Targets::Classes(vec![0, 1, 2, 0]);
    // Ten steps per epoch.
    let context = LossContext { student, teachers, step, epoch: step / 10, ..LossContext::student_only(student, &targets, 0) };
    let (total, _) = objective.compute(&context).unwrap();
    total.into_scalar::<f32>()
}

#[test]
fn kd_mixes_teachers_by_mean_weights_or_seeded_random_choice() {
    let device = medkd_models::test_device();
    let model = Model::new(&ModelSpec { small_input: true, ..ModelSpec::new(Arch::ResNet18, 3) }, &device).unwrap();
    let (student, a, b) = (features(&model, 1), features(&model, 2), features(&model, 3));
    let teachers = [a.clone(), b.clone()];
    // The student as its own teacher: zero KD.
    let same = kd_value(&kd_objective(TeacherMix::default(), 1).unwrap(), &student, &[student.clone()], 0);
    assert!(same.abs() < 1e-6, "{same}");
    // A one-hot weight list is that teacher alone; "mean" is the mean of the logits.
    let only_b = kd_value(&kd_objective(TeacherMix::Weights(vec![0.0, 2.0]), 2).unwrap(), &student, &teachers, 0);
    assert_eq!(only_b, kd_value(&kd_objective(TeacherMix::default(), 1).unwrap(), &student, &[b.clone()], 0));
    let mean_logits = Features { logits: (a.logits.clone() + b.logits.clone()).div_scalar(2.0), ..a.clone() };
    let mean = kd_value(&kd_objective(TeacherMix::default(), 2).unwrap(), &student, &teachers, 0);
    let expected = kd_value(&kd_objective(TeacherMix::default(), 1).unwrap(), &student, &[mean_logits], 0);
    assert!((mean - expected).abs() < 1e-6, "{mean} vs {expected}");
    // Random: each step uses one teacher, the same one for the same step, and both are used.
    let random = kd_objective(TeacherMix::Rule(TeacherRule::Random), 2).unwrap();
    let single = |t: &Features| kd_value(&kd_objective(TeacherMix::default(), 1).unwrap(), &student, &[t.clone()], 0);
    let (value_a, value_b) = (single(&a), single(&b));
    let picks: Vec<f32> = (0..20).map(|step| kd_value(&random, &student, &teachers, step)).collect();
    assert!(picks.iter().all(|v| *v == value_a || *v == value_b), "{picks:?}");
    assert!(picks.contains(&value_a) && picks.contains(&value_b), "{picks:?}");
    assert_eq!(picks, (0..20).map(|step| kd_value(&random, &student, &teachers, step)).collect::<Vec<_>>());
    // Per epoch: one teacher for all ten steps of an epoch, both teachers over 20 epochs.
    let per_epoch = kd_objective(TeacherMix::Rule(TeacherRule::RandomEpoch), 2).unwrap();
    let epochs: Vec<Vec<f32>> = (0..20).map(|e| (0..10).map(|s| kd_value(&per_epoch, &student, &teachers, e * 10 + s)).collect()).collect();
    assert!(epochs.iter().all(|steps| steps.iter().all(|v| *v == steps[0])), "{epochs:?}");
    let firsts: Vec<f32> = epochs.iter().map(|steps| steps[0]).collect();
    assert!(firsts.contains(&value_a) && firsts.contains(&value_b), "{firsts:?}");
}

#[test]
fn teacher_terms_are_checked_against_the_declared_teachers() {
    let error = |spec: LossSpec, num_teachers: usize| {
        let names = names(3);
        Objective::new(&[spec], &TaskFacts { teachers: &resnet18_teachers(num_teachers), ..facts(&names, &[1, 1, 1], false) })
            .err()
            .unwrap()
            .to_string()
    };
    let kd = |teachers| LossSpec::Kd(KdSpec { weight: 1.0, temperature: 4.0, teachers });
    assert!(error(kd(TeacherMix::default()), 0).contains("declares 0 [[teacher]]"));
    assert!(error(kd(TeacherMix::Weights(vec![1.0])), 2).contains("1 weights for 2 teachers"));
    assert!(error(kd(TeacherMix::Weights(vec![0.0, 0.0])), 2).contains("positive sum"));
    assert!(
        error(LossSpec::Kd(KdSpec { weight: 1.0, temperature: 0.0, teachers: TeacherMix::default() }), 1)
            .contains("temperature must be > 0")
    );
    assert!(error(LossSpec::RkdDistance(crate::terms::rkd_distance::RkdDistanceSpec { weight: 1.0, teacher: 2 }), 2).contains("teacher 2"));
    assert!(error(LossSpec::RkdAngle(RkdAngleSpec { weight: 1.0, teacher: 0, chunk: 0 }), 1).contains("chunk"));
    assert!(error(LossSpec::Attention(AttentionSpec { weight: 1.0, teacher: 0, stages: vec![4] }), 1).contains("stages"));
    assert!(error(LossSpec::Bce(BceSpec { weight: -1.0 }), 0).contains("weight must be"));
}

#[test]
fn repeated_kinds_are_logged_under_distinct_names() {
    let names = names(3);
    let kd = LossSpec::Kd(KdSpec { weight: 1.0, temperature: 4.0, teachers: TeacherMix::default() });
    let ce = LossSpec::CrossEntropy(CrossEntropySpec { weight: 1.0, label_smoothing: 0.0, class_weights: ClassWeights::default() });
    let objective =
        Objective::new(&[ce, kd.clone(), kd], &TaskFacts { teachers: &resnet18_teachers(1), ..facts(&names, &[1, 1, 1], false) }).unwrap();
    assert_eq!(objective.term_names(), ["cross_entropy", "kd", "kd_2"]);
}

#[test]
fn hint_and_channel_gram_regress_the_student_only_when_channels_differ() {
    let device = medkd_models::test_device();
    let spec = |arch| ModelSpec { small_input: true, ..ModelSpec::new(arch, 3) };
    let (resnet18, resnet50) = (Model::new(&spec(Arch::ResNet18), &device).unwrap(), Model::new(&spec(Arch::ResNet50), &device).unwrap());
    let names = names(3);
    let teacher_layouts = vec![teacher(&resnet50.layout()), teacher(&resnet18.layout())];
    let specs = [
        LossSpec::Hint(HintSpec { weight: 1.0, teacher: 0, stage: 3 }),
        LossSpec::ChannelGram(ChannelGramSpec { weight: 1.0, teacher: 1, stage: 2 }),
        LossSpec::ChannelGram(ChannelGramSpec { weight: 1.0, teacher: 0, stage: 1 }),
    ];
    let facts = TaskFacts { teachers: &teacher_layouts, ..facts(&names, &[1, 1, 1], false) };
    let objective = Objective::new(&specs, &facts).unwrap();
    // ResNet-18 -> ResNet-50 stages differ in channels (512 vs 2048, 128 vs 512); 18 -> 18 do not.
    assert_eq!(objective.adapter_shapes(), [(512, 2048), (128, 512)]);
    assert_eq!(objective.term_names(), ["hint", "channel_gram", "channel_gram_2"]);

    let adapters: Vec<ConvRegressor> = objective.adapter_shapes().iter().map(|&(i, o)| ConvRegressor::new(i, o, &device)).collect();
    let (student, teachers) = (features(&resnet18, 1), [features(&resnet50, 2), features(&resnet18, 3)]);
    let targets = Targets::Classes(vec![0, 1, 2, 0]);
    let context = LossContext {
        student: &student,
        teachers: &teachers,
        targets: &targets,
        adapters: &adapters,
        student_heads: &[],
        teacher_heads: &[],
        step: 0,
        epoch: 0,
        sample_weights: None,
    };
    let (_, terms) = objective.compute(&context).unwrap();
    let gram = channel_gram_rmse(student.spatial(2).clone(), teachers[1].spatial(2).clone()).into_scalar::<f32>();
    assert_eq!(terms[1].value.clone().into_scalar::<f32>(), gram, "no regressor between equal channel counts");
    let hint = hint_mse(adapters[0].forward(student.spatial(3).clone()), teachers[0].spatial(3).clone()).into_scalar::<f32>();
    assert_eq!(terms[0].value.clone().into_scalar::<f32>(), hint);

    // A teacher with a different stem has other spatial sizes: an error naming the term.
    let imagenet_stem = Model::new(&ModelSpec { small_input: false, ..spec(Arch::ResNet18) }, &device).unwrap();
    let other = [features(&imagenet_stem, 4), features(&resnet18, 3)];
    let error = objective.compute(&LossContext { teachers: &other, ..context }).err().unwrap().to_string();
    assert!(error.contains("hint") && error.contains("stage 3"), "{error}");
}

/// With a `kd_rotated` or `sskd` term the batch holds four views per image; cross-entropy and
/// `kd` then read the normal views only.
#[test]
fn rotation_terms_turn_on_views_and_per_image_terms_read_normal_rows() {
    let names = names(3);
    let specs: Vec<LossSpec> = from_json(
        r#"[{"kind": "cross_entropy"}, {"kind": "kd"}, {"kind": "kd_rotated", "weight": 2.7}, {"kind": "sskd", "weight": 10.0, "head_epochs": 3}]"#,
    );
    let teachers = [teacher(&layout(Arch::ResNet50))];
    let facts = TaskFacts { teachers: &teachers, ..facts(&names, &[1, 1, 1], false) };
    let objective = Objective::new(&specs, &facts).unwrap();
    assert!(objective.rotated_views());
    let head = &objective.projection_heads()[0];
    assert_eq!((head.teacher, head.student_dim, head.teacher_dim, head.epochs, head.lr), (0, 512, 2048, 3, 0.001));
    assert!(!Objective::new(&specs[..2], &facts).unwrap().rotated_views());

    let device = medkd_models::test_device();
    let random = |rows: usize, cols: usize| Tensor::<2>::random([rows, cols], burn::tensor::Distribution::Normal(0.0, 2.0), &device);
    let batch = 4;
    let features = |dim: usize| Features { maps: vec![], pooled: random(4 * batch, dim), logits: random(4 * batch, 3) };
    let (student, teacher) = (features(512), features(2048));
    let classes = vec![0, 2, 1, 2];
    let (student_heads, teacher_heads) = ([ProjectionHead::new(512, &device)], [ProjectionHead::new(2048, &device)]);
    let context = LossContext {
        student: &student,
        teachers: std::slice::from_ref(&teacher),
        targets: &Targets::Classes(classes.clone()),
        adapters: &[],
        student_heads: &student_heads,
        teacher_heads: &teacher_heads,
        step: 0,
        epoch: 0,
        sample_weights: None,
    };
    let (_, terms) = objective.compute(&context).unwrap();
    let value = |name: &str| terms.iter().find(|t| t.name == name).unwrap().value.clone().into_scalar::<f32>();
    let ce = cross_entropy(normal_rows(student.logits.clone()), &classes, None, 0.0).into_scalar::<f32>();
    assert_eq!(value("cross_entropy"), ce);
    let kd = kd_kl(normal_rows(student.logits.clone()), normal_rows(teacher.logits.clone()), 4.0).into_scalar::<f32>();
    assert_eq!(value("kd"), kd);
    let rotated = kd_rotated(student.logits.clone(), teacher.logits.clone(), &classes, 4.0, 1.0).into_scalar::<f32>();
    assert_eq!(value("kd_rotated"), rotated);
    let projected = |head: &ProjectionHead, f: &Features| head.forward(f.pooled.clone());
    let similarity = similarity_kd(projected(&student_heads[0], &student), projected(&teacher_heads[0], &teacher), 0.5, 0.75);
    assert_eq!(value("sskd"), similarity.into_scalar::<f32>());
}

#[test]
fn rotation_terms_reject_bad_parameters_and_tasks() {
    let names = names(3);
    let teachers = resnet18_teachers(1);
    let facts = |multi_label| TaskFacts { teachers: &teachers, ..facts(&names, &[1, 1, 1], multi_label) };
    let error = |json: &str, multi_label: bool| {
        let specs: Vec<LossSpec> = from_json(json);
        Objective::new(&specs, &facts(multi_label)).err().expect("should be rejected").to_string()
    };
    let e = error(r#"[{"kind": "sskd", "ratio": 1.5}]"#, false);
    assert!(e.contains("sskd") && e.contains("ratio must be in [0, 1], got 1.5"), "{e}");
    let e = error(r#"[{"kind": "kd_rotated", "temperature": 0.0}]"#, false);
    assert!(e.contains("kd_rotated") && e.contains("temperature must be > 0"), "{e}");
    let e = error(r#"[{"kind": "sskd", "head_epochs": 0}]"#, false);
    assert!(e.contains("head_epochs"), "{e}");
    let e = error(r#"[{"kind": "kd_rotated"}]"#, true);
    assert!(e.contains("kd_rotated") && e.contains("multi-label"), "{e}");
    let e = error(r#"[{"kind": "sskd", "teacher": 1}]"#, false);
    assert!(e.contains("sskd") && e.contains("teacher 1"), "{e}");
}

/// Terms that read stage maps accept spatial (C x H x W) maps only: a token map (a ViT's) or a
/// map index the architecture lacks is a config error naming the term, the key and the map.
#[test]
fn stage_map_terms_refuse_token_maps_and_missing_maps() {
    let names = names(3);
    let vit = FeatureLayout { maps: vec![MapInfo { name: "blocks.11".into(), kind: MapKind::Tokens { dim: 192 } }], pooled_dim: 192 };
    let error = |spec: &str, student: &FeatureLayout, teacher: &FeatureLayout| {
        let teachers = [self::teacher(teacher)];
        let facts = TaskFacts { student, teachers: &teachers, ..facts(&names, &[1, 1, 1], false) };
        Objective::new(&from_json::<Vec<LossSpec>>(spec), &facts).err().expect("should be rejected").to_string()
    };
    let e = error(r#"[{"kind": "hint", "stage": 0}]"#, &RESNET18, &vit);
    assert!(e.contains("'hint'") && e.contains("`stage` 0") && e.contains("teacher 0's map 0 (blocks.11) holds tokens"), "{e}");
    let e = error(r#"[{"kind": "attention", "stages": [0]}]"#, &vit, &RESNET18);
    assert!(e.contains("'attention'") && e.contains("the student's map 0 (blocks.11) holds tokens"), "{e}");
    let e = error(r#"[{"kind": "channel_gram", "stage": 4}]"#, &RESNET18, &RESNET18);
    assert!(e.contains("`stage` 4") && e.contains("has 4 feature maps (0 to 3)"), "{e}");
    let e = error(r#"[{"kind": "attention", "stages": [0, 4]}]"#, &RESNET18, &RESNET18);
    assert!(e.contains("`stages` 4"), "{e}");
    // Logit and embedding terms need no spatial map: a token model can be their teacher.
    let teachers = [teacher(&vit)];
    let facts = TaskFacts { teachers: &teachers, ..facts(&names, &[1, 1, 1], false) };
    assert!(Objective::new(&from_json::<Vec<LossSpec>>(r#"[{"kind": "kd"}, {"kind": "rkd_distance"}]"#), &facts).is_ok());
}

/// Soft pseudo-labels over two classes are DISTL's sigmoid BCE on the logit differences, and a
/// one-hot target gives the plain cross-entropy.
#[test]
fn soft_cross_entropy_is_distls_bce_for_two_classes_and_cross_entropy_for_one_hot_targets() {
    let device = medkd_models::test_device();
    let student = Tensor::<2>::from_floats([[0.3, -1.2], [2.0, 0.5], [-0.7, 0.1]], &device);
    let teacher = Tensor::<2>::from_floats([[1.5, -0.5], [-0.2, 0.4], [0.0, 3.0]], &device);
    let soft = soft_cross_entropy(student.clone(), burn::tensor::activation::softmax(teacher.clone(), 1)).into_scalar::<f32>();
    let difference = |x: Tensor<2>| x.clone().narrow(1, 1, 1) - x.narrow(1, 0, 1);
    let bce = bce_with_logits(difference(student.clone()), burn::tensor::activation::sigmoid(difference(teacher))).into_scalar::<f32>();
    assert!((soft - bce).abs() < 1e-6, "{soft} vs {bce}");
    let one_hot = Tensor::<2>::from_floats([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]], &device);
    let hard = soft_cross_entropy(student.clone(), one_hot).into_scalar::<f32>();
    let ce = cross_entropy(student, &[1, 0, 1], None, 0.0).into_scalar::<f32>();
    assert!((hard - ce).abs() < 1e-6, "{hard} vs {ce}");
}
