//! The report's gallery: test images the kept model got right most confidently, got wrong most
//! confidently, and was least sure of, each with its Grad-CAM for the predicted class laid over
//! it, written as PNGs and `gallery.json` into the run folder (`medkd report` shows them).

use std::path::Path;

use image::{DynamicImage, ImageBuffer, Luma, Rgb, RgbImage, imageops};
use serde::Serialize;

use crate::evaluate::{Scored, batch_tensor, submission_id};
use crate::{RunDir, RunSetup, TrainError};
use medkd_data::SplitName;
use medkd_models::Model;

/// Images per group.
const PER_GROUP: usize = 4;
/// Side of a gallery tile in pixels (small inputs are enlarged to be seen).
const TILE: u32 = 160;

/// One tile of `gallery.json`.
#[derive(Serialize)]
pub struct Tile {
    pub file: String,
    pub image: String,
    pub group: &'static str,
    pub label: String,
    pub predicted: String,
    /// The predicted class's probability (the model's own, before temperature scaling).
    pub confidence: f32,
    /// `[height, width]` of the map: the feature map the Grad-CAM is computed on, or a ViT's
    /// patch grid.
    pub map: [usize; 2],
    /// What the map shows ([`Model::saliency_kind`]): `grad_cam` or `cls_attention`.
    pub saliency: &'static str,
}

/// The groups' sample indices into `scored`: most confident right, most confident wrong, least
/// confident (smallest top probability), each by confidence, at most [`PER_GROUP`] each.
fn pick(scored: &Scored, k: usize) -> Vec<(&'static str, usize)> {
    let top: Vec<(usize, f32)> = scored
        .probs
        .chunks_exact(k)
        .map(|row| (0..k).fold((0, row[0]), |best, c| if row[c] > best.1 { (c, row[c]) } else { best }))
        .collect();
    let by = |keep: &dyn Fn(usize) -> bool, descending: bool| -> Vec<usize> {
        let mut indices: Vec<usize> = (0..top.len()).filter(|&i| keep(i)).collect();
        indices.sort_by(|&a, &b| top[a].1.total_cmp(&top[b].1).then(a.cmp(&b)));
        if descending {
            indices.reverse();
        }
        indices.truncate(PER_GROUP);
        indices
    };
    let right = by(&|i| top[i].0 == scored.labels[i], true);
    let wrong = by(&|i| top[i].0 != scored.labels[i], true);
    let unsure = by(&|i| !right.contains(&i) && !wrong.contains(&i), false);
    [("confident and right", right), ("confident and wrong", wrong), ("least sure", unsure)]
        .into_iter()
        .flat_map(|(group, indices)| indices.into_iter().map(move |i| (group, i)))
        .collect()
}

/// Writes `gallery/*.png` and `gallery/gallery.json` for `scored`, the test split's predictions
/// of `model` (the run's best checkpoint).
pub fn write_gallery(run: &RunDir, setup: &RunSetup, model: &Model, scored: &Scored) -> Result<(), TrainError> {
    let names = &setup.info.class_names;
    let k = names.len();
    let dataset = setup.split(SplitName::Test);
    let index_of: std::collections::HashMap<String, usize> = (0..dataset.len()).map(|i| (dataset.id(i), i)).collect();
    let folder = run.root().join("gallery");
    std::fs::create_dir_all(&folder).map_err(|e| TrainError::io(&folder, e))?;
    let mut tiles = Vec::new();
    for (n, (group, i)) in pick(scored, k).into_iter().enumerate() {
        let id = scored.ids[i].as_str();
        let Some(&index) = index_of.get(id) else {
            return Err(TrainError::Input(format!("{}: test image '{id}' is not in the run's test split", folder.display())));
        };
        let image = dataset.image(index)?;
        let row = &scored.probs[i * k..(i + 1) * k];
        let predicted = (0..k).fold(0, |best, c| if row[c] > row[best] { c } else { best });
        let (values, [c, h, w]) = setup.eval_pipeline.apply_seeded(&image, 0)?;
        let cam = model.saliency(batch_tensor(&values, [1, c, h, w], &setup.device), &[predicted]);
        let [_, cam_h, cam_w] = cam.dims();
        let cam: Vec<f32> = cam.into_data().try_to_vec::<f32>().expect("Grad-CAM is f32");
        let file = format!("{n:02}.png");
        overlay(&image, &cam, [cam_h, cam_w])
            .save(folder.join(&file))
            .map_err(|e| TrainError::Input(format!("{}: {e}", folder.join(&file).display())))?;
        tiles.push(Tile {
            file,
            image: submission_id(id).to_string(),
            group,
            label: names[scored.labels[i]].clone(),
            predicted: names[predicted].clone(),
            confidence: row[predicted],
            map: [cam_h, cam_w],
            saliency: model.saliency_kind(),
        });
    }
    run.write_json(&folder.join("gallery.json"), &tiles)
}

/// The image at [`TILE`] px with the map (scaled to its maximum, bilinear) over it in a
/// blue-to-red ramp, half transparent where the map is high.
fn overlay(image: &DynamicImage, cam: &[f32], [h, w]: [usize; 2]) -> RgbImage {
    let base = imageops::resize(&image.to_rgb8(), TILE, TILE, imageops::FilterType::Triangle);
    let max = cam.iter().fold(0f32, |m, &v| m.max(v));
    let scaled: Vec<f32> = cam.iter().map(|&v| if max > 0.0 { v / max } else { 0.0 }).collect();
    let map: ImageBuffer<Luma<f32>, Vec<f32>> = ImageBuffer::from_raw(w as u32, h as u32, scaled).expect("h × w values");
    let map = imageops::resize(&map, TILE, TILE, imageops::FilterType::Triangle);
    ImageBuffer::from_fn(TILE, TILE, |x, y| {
        let v = map.get_pixel(x, y)[0].clamp(0.0, 1.0);
        let heat = [v, 1.0 - (2.0 * v - 1.0).abs(), 1.0 - v].map(|c| c * 255.0);
        let Rgb(pixel) = *base.get_pixel(x, y);
        let alpha = 0.55 * v;
        Rgb(std::array::from_fn(|c| ((1.0 - alpha) * pixel[c] as f32 + alpha * heat[c]).round() as u8))
    })
}

/// Whether `path`'s run already has a gallery.
pub fn has_gallery(path: &Path) -> bool {
    path.join("gallery").join("gallery.json").is_file()
}
