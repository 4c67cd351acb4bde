//! The batch loader: determinism, batching, bounded prefetch, errors and shutdown, several views
//! per sample, and unlabelled views.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{Synthetic, config, medmnist};
use medkd_data::{
    Batch, Concat, DataError, DataFormat, ImageDataset, Interleave, Loader, LoaderOptions, Normalization, Pipeline, Sampling, Size, Subset,
    Target, TransformSpec, Unlabelled, build_pipelines, open_splits, sampling_weights,
};

fn augmenting() -> Arc<Pipeline> {
    let specs = [
        TransformSpec::RandomResizedCrop { size: Size::Edge(6), scale: [0.3, 1.0], ratio: [0.75, 1.333] },
        TransformSpec::Hflip { p: 0.5 },
        TransformSpec::ColorJitter { brightness: 0.4, contrast: 0.4, saturation: 0.0, hue: 0.0 },
    ];
    Arc::new(Pipeline::new(&specs, 1, Normalization::identity(1)).unwrap())
}

fn options(workers: usize) -> LoaderOptions {
    LoaderOptions { batch_size: 4, shuffle: true, drop_last: false, seed: 5, workers, prefetch: 2 }
}

fn collect(loader: &Loader, epoch: usize) -> Vec<Batch> {
    loader.epoch(epoch).collect::<Result<_, _>>().unwrap()
}

#[test]
fn same_seed_gives_identical_batches_for_any_worker_count() {
    let ds: Arc<dyn ImageDataset> = Arc::new(Synthetic::new(18, 10));
    let one = Loader::new(ds.clone(), augmenting(), options(1)).unwrap();
    let two = Loader::new(ds.clone(), augmenting(), options(2)).unwrap();
    let a = collect(&one, 0);
    assert_eq!(a, collect(&two, 0));
    assert_eq!(a.len(), 5);
    assert_eq!(a[0].shape, [4, 1, 6, 6]);
    assert_eq!(a[4].shape, [2, 1, 6, 6]);
    let mut seen: Vec<usize> = a.iter().flat_map(|b| b.indices.clone()).collect();
    assert_ne!(seen, (0..18).collect::<Vec<_>>(), "shuffled");
    seen.sort_unstable();
    assert_eq!(seen, (0..18).collect::<Vec<_>>(), "each sample once");

    let b = collect(&one, 1);
    let order = |bs: &[Batch]| bs.iter().flat_map(|b| b.indices.clone()).collect::<Vec<_>>();
    assert_ne!(order(&a), order(&b), "another epoch, another order");
    let other_seed = Loader::new(ds.clone(), augmenting(), LoaderOptions { seed: 6, ..options(1) }).unwrap();
    assert_ne!(order(&a), order(&collect(&other_seed, 0)));

    let plain = Loader::new(ds, augmenting(), LoaderOptions { shuffle: false, ..options(2) }).unwrap();
    assert_eq!(order(&collect(&plain, 3)), (0..18).collect::<Vec<_>>());
}

#[test]
fn drop_last_and_batch_targets() {
    let ds: Arc<dyn ImageDataset> = Arc::new(Synthetic::new(10, 4));
    let keep = Loader::new(ds.clone(), augmenting(), LoaderOptions { shuffle: false, ..options(1) }).unwrap();
    let drop = Loader::new(ds, augmenting(), LoaderOptions { shuffle: false, drop_last: true, ..options(1) }).unwrap();
    assert_eq!((keep.num_batches(), drop.num_batches()), (3, 2));
    let sizes = |l: &Loader| collect(l, 0).iter().map(|b| b.shape[0]).collect::<Vec<_>>();
    assert_eq!(sizes(&keep), [4, 4, 2]);
    assert_eq!(sizes(&drop), [4, 4]);

    let first = &collect(&keep, 0)[0];
    assert_eq!(first.class_labels(), [0, 1, 2, 0]);
    assert_eq!(first.multi_hot(), [1., 0., 0., 0., 1., 0., 0., 0., 1., 1., 0., 0.]);
    assert_eq!(first.images.len(), 4 * 6 * 6);
}

/// The decode count once it has reached `expected` (or 10 s passed) and stayed put a moment.
fn settle(ds: &Synthetic, expected: usize) -> usize {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while ds.decoded.load(Ordering::SeqCst) < expected && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(150));
    ds.decoded.load(Ordering::SeqCst)
}

#[test]
fn prefetch_is_bounded_and_dropping_stops_the_thread() {
    let ds = Arc::new(Synthetic::new(200, 4));
    let opts = LoaderOptions { batch_size: 1, shuffle: false, prefetch: 2, ..options(1) };
    let loader = Loader::new(ds.clone(), augmenting(), opts).unwrap();
    let mut epoch = loader.epoch(0);
    epoch.next().unwrap().unwrap();
    // One consumed, two queued, one finished and blocked on the full queue: then nothing more.
    assert_eq!(settle(&ds, 4), 4);
    epoch.next().unwrap().unwrap();
    assert_eq!(settle(&ds, 5), 5, "one slot freed, one more decoded");
    drop(epoch);
    let after_drop = ds.decoded.load(Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(ds.decoded.load(Ordering::SeqCst), after_drop, "thread stopped");
    assert!(after_drop < 200);
}

#[test]
fn a_failing_sample_is_an_error_item_not_a_panic() {
    let mut synthetic = Synthetic::new(12, 4);
    synthetic.fail_at = Some(5);
    let loader = Loader::new(Arc::new(synthetic), augmenting(), LoaderOptions { shuffle: false, ..options(2) }).unwrap();
    let items: Vec<Result<Batch, DataError>> = loader.epoch(0).collect();
    assert_eq!(items.len(), 3);
    assert!(items[0].is_ok() && items[2].is_ok());
    let msg = items[1].as_ref().unwrap_err().to_string();
    assert!(msg.contains("synthetic/5.png"), "{msg}");
}

#[test]
fn real_medmnist_epoch_with_eval_pipeline() {
    let mut cfg = config(DataFormat::Medmnist, &medmnist("breastmnist"));
    cfg.channels = Some(3);
    cfg.eval_transforms = vec![TransformSpec::Resize { size: Size::Edge(32) }];
    cfg.normalize = medkd_data::NormalizeConfig::Imagenet {};
    let splits = open_splits(&cfg, "/".as_ref()).unwrap();
    let pipelines = build_pipelines(&cfg, splits.train.as_ref()).unwrap();
    let opts = LoaderOptions { batch_size: 64, workers: 2, ..LoaderOptions::default() };
    let loader = Loader::new(splits.train.clone(), pipelines.eval, opts).unwrap();
    let batches = collect(&loader, 0);
    assert_eq!(batches.len(), 9);
    assert_eq!(batches[0].shape, [64, 3, 32, 32]);
    assert_eq!(batches.iter().map(|b| b.shape[0]).sum::<usize>(), 546);
    assert!(batches[0].images.iter().all(|v| v.is_finite() && *v > -2.2 && *v < 2.7));
}

/// 10 real HAM10000 images (3 classes) from the shipped labels.csv.
fn ham_subset() -> Arc<dyn ImageDataset> {
    let mut cfg = config(DataFormat::Csv, &common::ham_dir().join("labels.csv"));
    cfg.image_dir = Some("images".into());
    cfg.image_column = Some("image_id".into());
    cfg.image_ext = Some("jpg".into());
    cfg.label_column = Some("dx".into());
    cfg.split = Some(medkd_data::SplitConfig { val: 0.0, test: 0.0, seed: 0, ..Default::default() });
    let full = open_splits(&cfg, "/".as_ref()).unwrap().train;
    Arc::new(Subset::new(full, (0..10).map(|i| i * 37).collect()))
}

/// A DINO-style crop: random resized crop to `size` px, then a random flip.
fn crop(size: u32, scale: [f32; 2]) -> Arc<Pipeline> {
    let specs = [TransformSpec::RandomResizedCrop { size: Size::Edge(size), scale, ratio: [0.75, 1.333] }, TransformSpec::Hflip { p: 0.5 }];
    Arc::new(Pipeline::new(&specs, 3, Normalization::imagenet(3)).unwrap())
}

fn multi_crop() -> Vec<Arc<Pipeline>> {
    // Two identical global crops: only their random draws can tell them apart.
    vec![crop(32, [0.4, 1.0]), crop(32, [0.4, 1.0]), crop(16, [0.05, 0.4])]
}

#[test]
fn multi_view_batches_have_per_view_shapes_and_keep_view_0_as_a_single_view_loader() {
    let ds = ham_subset();
    let opts = |workers| LoaderOptions { batch_size: 4, shuffle: true, seed: 11, workers, ..LoaderOptions::default() };
    let one = Loader::with_views(ds.clone(), multi_crop(), opts(1)).unwrap();
    assert_eq!(one.num_views(), 3);
    let a = collect(&one, 2);
    assert_eq!(a, collect(&Loader::with_views(ds.clone(), multi_crop(), opts(2)).unwrap(), 2), "any worker count");
    assert_eq!(a.iter().map(|b| b.shape[0]).collect::<Vec<_>>(), [4, 4, 2]);
    for b in &a {
        let n = b.shape[0];
        assert_eq!(b.shape, [n, 3, 32, 32]);
        assert_eq!(b.extra_views.iter().map(|v| v.shape).collect::<Vec<_>>(), [[n, 3, 32, 32], [n, 3, 16, 16]]);
        assert_eq!(b.extra_views[0].images.len(), n * 3 * 32 * 32);
        assert_eq!(b.extra_views[1].images.len(), n * 3 * 16 * 16);
        assert_eq!(b.views().count(), 3);
        // The two global crops differ for every sample.
        let per_sample = 3 * 32 * 32;
        for s in 0..n {
            let range = s * per_sample..(s + 1) * per_sample;
            assert_ne!(b.images[range.clone()], b.extra_views[0].images[range], "sample {}", b.indices[s]);
        }
    }

    // View 0 is bit for bit what Loader::new gives with the first pipeline, batch for batch.
    let single = collect(&Loader::new(ds.clone(), multi_crop()[0].clone(), opts(2)).unwrap(), 2);
    assert_eq!(single.len(), a.len());
    for (s, m) in single.iter().zip(&a) {
        assert!(s.extra_views.is_empty());
        assert_eq!((&s.indices, &s.targets, s.shape), (&m.indices, &m.targets, m.shape));
        let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&s.images), bits(&m.images));
    }

    // A view's draws depend on its own index only: adding a view leaves view 1 as it was.
    let two = collect(&Loader::with_views(ds.clone(), multi_crop()[..2].to_vec(), opts(1)).unwrap(), 2);
    assert_eq!(two.iter().map(|b| &b.extra_views[0]).collect::<Vec<_>>(), a.iter().map(|b| &b.extra_views[0]).collect::<Vec<_>>());
    // Another epoch, other crops.
    let next = collect(&one, 3);
    assert_ne!(next.iter().map(|b| &b.extra_views[1]).collect::<Vec<_>>(), a.iter().map(|b| &b.extra_views[1]).collect::<Vec<_>>());

    let msg = Loader::with_views(ds, Vec::new(), opts(1)).err().unwrap().to_string();
    assert!(msg.contains("at least one view"), "{msg}");
}

#[test]
fn unlabelled_view_keeps_images_and_ids_and_yields_no_targets() {
    let base = ham_subset();
    let pool: Arc<dyn ImageDataset> = Arc::new(Unlabelled::new(base.clone()));
    assert_eq!((pool.len(), pool.info()), (base.len(), base.info()));
    for i in 0..pool.len() {
        assert_eq!(pool.id(i), base.id(i));
        assert_eq!(pool.target(i), Target::None);
        assert!(matches!(base.target(i), Target::Class(_)));
    }
    assert_eq!(pool.image(3).unwrap(), base.image(3).unwrap());

    let opts = LoaderOptions { batch_size: 4, shuffle: true, seed: 2, workers: 2, ..LoaderOptions::default() };
    let unlabelled = collect(&Loader::new(pool, crop(32, [0.4, 1.0]), opts.clone()).unwrap(), 0);
    let labelled = collect(&Loader::new(base, crop(32, [0.4, 1.0]), opts).unwrap(), 0);
    for (u, l) in unlabelled.iter().zip(&labelled) {
        assert!(u.targets.iter().all(|t| *t == Target::None));
        assert!(!u.is_labelled() && l.is_labelled());
        assert_eq!(u.boxes(), None);
        assert!(u.multi_hot().iter().all(|v| *v == 0.0));
        assert_eq!((&u.images, &u.indices), (&l.images, &l.indices), "same images, same order");
    }
    assert_eq!(unlabelled.len(), 3);
}

/// Class re-sampling on BreastMNIST's training split (147 malignant, 399 benign/normal): over
/// 60 epochs each class is drawn in the share its rule gives, within 4 binomial standard
/// deviations; the draws depend on (seed, epoch) only.
#[test]
fn class_resampling_draws_classes_in_the_rules_shares() {
    let [train, _, _] = medkd_data::open_medmnist(&medmnist("breastmnist"), None).unwrap();
    let train: Arc<dyn ImageDataset> = Arc::new(train);
    let counts = medkd_data::class_counts(train.as_ref());
    assert_eq!(counts, [147, 399]);
    let identity = Arc::new(Pipeline::new(&[], 1, Normalization::identity(1)).unwrap());
    let options = LoaderOptions { batch_size: 64, shuffle: true, drop_last: false, seed: 3, workers: 2, prefetch: 2 };
    let root = |n: usize| (n as f64).sqrt();
    for (rule, expected) in [(Sampling::ClassBalanced, 0.5), (Sampling::SquareRoot, root(147) / (root(147) + root(399)))] {
        let weights = sampling_weights(train.as_ref(), rule).unwrap();
        let loader = Loader::new(train.clone(), identity.clone(), options.clone()).unwrap().resampled(&weights).unwrap();
        let epochs = 60;
        let (mut malignant, mut total) = (0usize, 0usize);
        for epoch in 0..epochs {
            let labels: Vec<usize> = collect(&loader, epoch).iter().flat_map(Batch::class_labels).collect();
            assert_eq!(labels.len(), train.len(), "an epoch draws as many samples as the split has");
            malignant += labels.iter().filter(|&&c| c == 0).count();
            total += labels.len();
        }
        let share = malignant as f64 / total as f64;
        let sigma = (expected * (1.0 - expected) / total as f64).sqrt();
        assert!((share - expected).abs() < 4.0 * sigma, "{rule:?}: malignant share {share}, expected {expected} ± {sigma}");
        // Plain shuffling keeps the split's share, 147 / 546 = 0.27: re-sampling moved it.
        assert!(share > 0.3, "{rule:?}: {share}");
        let again = Loader::new(train.clone(), identity.clone(), LoaderOptions { workers: 1, ..options.clone() }).unwrap();
        let again = again.resampled(&weights).unwrap();
        assert_eq!(collect(&loader, 7), collect(&again, 7), "same draws for any worker count");
        assert_ne!(collect(&loader, 7)[0].indices, collect(&loader, 8)[0].indices, "each epoch draws anew");
    }
}

#[test]
fn resampling_needs_a_class_per_sample_and_a_weight_per_sample() {
    let ds: Arc<dyn ImageDataset> = Arc::new(Synthetic::new(6, 4));
    let unlabelled = Unlabelled::new(ds.clone());
    let error = sampling_weights(&unlabelled, Sampling::ClassBalanced).unwrap_err().to_string();
    assert!(error.contains("one class per sample") && error.contains("None"), "{error}");
    let loader = Loader::new(ds, augmenting(), options(1)).unwrap();
    let error = loader.resampled(&[1.0; 3]).err().unwrap().to_string();
    assert!(error.contains("got 3 for 6 samples"), "{error}");
}

/// DISTL's correction passes: a whole shuffled pass over the inserted (labelled) group before
/// main batch 0, `every`, ...; batches never mix the groups; the layout is seeded per epoch; an
/// [`Unlabelled`] second part of a [`Concat`] has no targets.
#[test]
fn interleaved_epochs_insert_whole_passes_every_n_main_batches() {
    let labelled: Arc<dyn ImageDataset> = Arc::new(Synthetic::new(3, 10));
    let pool: Arc<dyn ImageDataset> = Arc::new(Unlabelled::new(Arc::new(Synthetic::new(7, 10))));
    let ds: Arc<dyn ImageDataset> = Arc::new(Concat::new(labelled, pool));
    assert_eq!(ds.len(), 10);
    let interleave = Interleave { main: (3..10).collect(), inserted: (0..3).collect(), every: 3 };
    let opts = LoaderOptions { batch_size: 2, ..options(1) };
    let loader = Loader::new(ds.clone(), augmenting(), opts.clone()).unwrap().interleaved(interleave.clone()).unwrap();
    // 7 main samples: 4 batches; 3 inserted: 2 batches; passes before main batches 0 and 3.
    assert_eq!(loader.num_batches(), 4 + 2 * 2);
    let batches = collect(&loader, 0);
    assert_eq!(batches.len(), loader.num_batches());
    let labelled_flags: Vec<bool> = batches.iter().map(Batch::is_labelled).collect();
    assert_eq!(labelled_flags, [true, true, false, false, false, true, true, false]);
    for batch in &batches {
        assert!(batch.indices.iter().all(|&i| (i < 3) == batch.is_labelled()), "groups never mix: {:?}", batch.indices);
    }
    let sorted = |range: std::ops::Range<usize>| {
        let mut v: Vec<usize> = batches[range].iter().flat_map(|b| b.indices.clone()).collect();
        v.sort_unstable();
        v
    };
    assert_eq!(sorted(0..2), [0, 1, 2], "a pass covers the inserted group once");
    assert_eq!(sorted(5..7), [0, 1, 2]);
    let mut main: Vec<usize> = [2, 3, 4, 7].iter().flat_map(|&b| batches[b].indices.clone()).collect();
    main.sort_unstable();
    assert_eq!(main, (3..10).collect::<Vec<_>>(), "the main group once per epoch");
    assert_eq!(batches, collect(&loader, 0), "seeded");
    assert_ne!(
        batches.iter().map(|b| b.indices.clone()).collect::<Vec<_>>(),
        collect(&loader, 1).iter().map(|b| b.indices.clone()).collect::<Vec<_>>()
    );
    // No correction pass, or no main group (round 0: one pass per epoch).
    let none =
        Loader::new(ds.clone(), augmenting(), opts.clone()).unwrap().interleaved(Interleave { every: 0, ..interleave.clone() }).unwrap();
    assert_eq!(none.num_batches(), 4);
    let only = Loader::new(ds.clone(), augmenting(), opts.clone()).unwrap();
    let only = only.interleaved(Interleave { main: Vec::new(), ..interleave.clone() }).unwrap();
    assert_eq!(collect(&only, 0).len(), 2);
    let big = LoaderOptions { batch_size: 4, drop_last: true, ..opts };
    let error = Loader::new(ds, augmenting(), big).unwrap().interleaved(interleave).err().unwrap().to_string();
    assert!(error.contains("the inserted group has 3 samples, fewer than one batch of 4"), "{error}");
}
