//! `medkd prune`: hard-to-learn samples of a population of localization runs (Hooker et al.'s
//! pruning-identified exemplars, as Jaiswal et al. use them for localization). Each run's best
//! model is pruned globally by magnitude at every requested sparsity, without fine-tuning, and
//! scored on a split; a sample is HTL for one model when its pruned box overlaps the dense box
//! with IoU below `--agreement`, and HTL for the population when most models say so (the modal
//! vote) at `--htl-sparsity`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail, ensure};
use medkd_data::Task;
use medkd_train::evaluate::{predict_boxes, submission_id};
use medkd_train::htl::{agreement, pruned_boxes};
use medkd_train::parse_split;
use serde_json::json;

use crate::commands::open_run;

pub struct PruneArgs<'a> {
    pub runs: &'a [PathBuf],
    pub sparsities: &'a [f64],
    pub split: &'a str,
    pub agreement: f64,
    pub htl_sparsity: f64,
    pub out: &'a Path,
}

/// One run's per-image scores on the split: its dense box's IoU with the true box, and at each
/// sparsity (in the order scored) the pruned box's IoU with the true box and with the dense box.
struct Scores {
    dense_iou: Vec<f64>,
    pruned_iou: Vec<Vec<f64>>,
    agreement: Vec<Vec<f64>>,
}

fn mean(values: impl IntoIterator<Item = f64>) -> f64 {
    let (sum, n) = values.into_iter().fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    sum / n.max(1) as f64
}

pub fn prune(args: &PruneArgs) -> Result<()> {
    let PruneArgs { runs, sparsities, split, agreement: threshold, htl_sparsity, out } = *args;
    for &s in sparsities.iter().chain([&htl_sparsity]) {
        ensure!((0.0..1.0).contains(&s), "sparsity {s} is outside [0, 1)");
    }
    ensure!(threshold > 0.0 && threshold <= 1.0, "--agreement {threshold} is outside (0, 1]");
    let mut sparsities = sparsities.to_vec();
    if !sparsities.contains(&htl_sparsity) {
        sparsities.push(htl_sparsity);
    }
    sparsities.sort_by(f64::total_cmp);
    sparsities.dedup();
    let split_name = parse_split(split)?;
    // Every run is opened and checked before any is scored or anything is written.
    let mut opened = Vec::new();
    for path in runs {
        let (config, run, setup) = open_run(path)?;
        if setup.info.task != Task::Localization {
            bail!("{}: `medkd prune` scores localization runs (box targets); this run's task is {}", path.display(), setup.info.task);
        }
        opened.push((path, config, run, setup));
    }
    let ids = |setup: &medkd_train::RunSetup| {
        let dataset = setup.split(split_name);
        (0..dataset.len()).map(|i| dataset.id(i)).collect::<Vec<_>>()
    };
    let reference = ids(&opened[0].3);
    for (path, _, _, setup) in &opened[1..] {
        if ids(setup) != reference {
            bail!(
                "{}: its {split} split holds other images than {}'s: a population shares one data split",
                path.display(),
                runs[0].display()
            );
        }
    }

    let mut curve = Vec::new();
    let mut scored = Vec::new();
    for (path, config, run, setup) in &opened {
        let model = setup.load_best(run)?;
        let loader = setup.eval_loader(config, setup.split(split_name))?;
        let dense = predict_boxes(&model, &loader, setup.box_source, &setup.device)?;
        let dense_iou = dense.iou()?;
        curve.push(json!({ "run": path, "sparsity": 0.0, "reached": 0.0, "mean_iou": mean(dense_iou.iter().copied()), "mean_agreement": 1.0, "htl": 0 }));
        let mut run_scores = Scores { dense_iou, pruned_iou: Vec::new(), agreement: Vec::new() };
        for &s in &sparsities {
            let (report, boxes) = pruned_boxes(&model, s, &loader, setup.box_source, &setup.device)?;
            let (iou, agree) = (boxes.iou()?, agreement(&dense, &boxes));
            let htl = agree.iter().filter(|a| **a < threshold).count();
            let row = json!({
                "run": path, "sparsity": s, "reached": report.sparsity(), "mean_iou": mean(iou.iter().copied()),
                "mean_agreement": mean(agree.iter().copied()), "htl": htl,
            });
            eprintln!("{}: sparsity {s} (reached {:.4}): mean IoU {:.4}, {htl} HTL", path.display(), report.sparsity(), row["mean_iou"]);
            curve.push(row);
            run_scores.pruned_iou.push(iou);
            run_scores.agreement.push(agree);
        }
        scored.push(run_scores);
    }

    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let k = scored.len();
    let at = sparsities.iter().position(|&s| s == htl_sparsity).expect("the HTL sparsity is scored");
    // Per model, per sample: HTL at the chosen sparsity.
    let flags: Vec<Vec<bool>> = scored.iter().map(|r| r.agreement[at].iter().map(|a| *a < threshold).collect()).collect();
    let votes: Vec<usize> = (0..reference.len()).map(|i| flags.iter().filter(|f| f[i]).count()).collect();
    let htl: Vec<bool> = votes.iter().map(|&v| 2 * v > k).collect();

    // htl.csv: what `[method.htl] file` reads; scores.csv: every sparsity's agreement and votes.
    let mut htl_csv = String::from("image,htl,votes,models,agreement,dense_iou,pruned_iou\n");
    let mut scores_csv = String::from("image,dense_iou");
    for s in &sparsities {
        let _ = write!(scores_csv, ",agreement@{s},votes@{s},pruned_iou@{s}");
    }
    scores_csv.push('\n');
    for (i, id) in reference.iter().enumerate() {
        // Means over the population.
        let dense_iou = mean(scored.iter().map(|r| r.dense_iou[i]));
        let agree = |s: usize| mean(scored.iter().map(|r| r.agreement[s][i]));
        let pruned_iou = |s: usize| mean(scored.iter().map(|r| r.pruned_iou[s][i]));
        let id = submission_id(id);
        let _ = writeln!(htl_csv, "{id},{},{},{k},{},{dense_iou},{}", u8::from(htl[i]), votes[i], agree(at), pruned_iou(at));
        let _ = write!(scores_csv, "{id},{dense_iou}");
        for s in 0..sparsities.len() {
            let v = scored.iter().filter(|r| r.agreement[s][i] < threshold).count();
            let _ = write!(scores_csv, ",{},{v},{}", agree(s), pruned_iou(s));
        }
        scores_csv.push('\n');
    }
    // How much the models' HTL sets overlap: Jaccard index of every pair.
    let mut overlaps = Vec::new();
    for a in 0..k {
        for b in a + 1..k {
            let both = (0..reference.len()).filter(|&i| flags[a][i] && flags[b][i]).count();
            let either = (0..reference.len()).filter(|&i| flags[a][i] || flags[b][i]).count();
            overlaps.push(json!({ "runs": [runs[a].clone(), runs[b].clone()], "jaccard": both as f64 / either.max(1) as f64 }));
        }
    }
    let report = json!({
        "runs": runs, "split": split, "samples": reference.len(), "sparsities": sparsities, "agreement": threshold,
        "htl_sparsity": htl_sparsity, "htl": htl.iter().filter(|h| **h).count(),
        "htl_per_run": flags.iter().map(|f| f.iter().filter(|h| **h).count()).collect::<Vec<_>>(),
        "overlap": overlaps, "curve": curve, "medkd": medkd_train::build_info::json(),
    });
    let page = medkd_report::prune_page(&report).map_err(anyhow::Error::msg)?;
    let files = [
        ("htl.csv", htl_csv),
        ("scores.csv", scores_csv),
        ("prune.json", serde_json::to_string_pretty(&report)? + "\n"),
        ("report.html", page),
    ];
    for (name, text) in files {
        std::fs::write(out.join(name), text).with_context(|| format!("writing {}", out.join(name).display()))?;
    }
    println!(
        "{} of {} {split} images are hard to learn (most of {k} models disagree with their pruned selves at sparsity {htl_sparsity}, box IoU < {threshold})",
        report["htl"],
        reference.len()
    );
    println!("files: {}", out.display());
    Ok(())
}
