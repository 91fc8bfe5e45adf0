//! Grid generation for PixelCNN.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::sampling::sample_token;
use super::{Engine, SamplingConfig};
use crate::error::{Error, Result};
use crate::models::Model;
use crate::tensor::Graph;

/// Fills a `height` × `width` grid in raster order: the first `prompt_cells.len()` cells are
/// kept as given, every later cell is sampled from the model's logits at that cell. Returns all
/// `height * width` cells (prompt included), row-major. `cfg.max_tokens` is not used: the grid
/// size fixes the count. Randomness: ChaCha8 seeded from `cfg.seed`, one draw per sampled cell.
///
/// Each cell recomputes the full grid forward pass. Unlike the 1-D families there is no
/// incremental form here: a masked 2-D conv at (r, c) reads a window reaching k/2 rows up and
/// k/2 columns to both sides, so a cache would have to hold a band of whole rows per layer and
/// update it column by column — a 2-D ring buffer the step backend does not have. Cells not yet
/// sampled are left at 0; the masks guarantee the logits of a cell never see them.
pub fn generate_grid(model: &Model, height: usize, width: usize, prompt_cells: &[u32], cfg: &SamplingConfig, banned: &[u32]) -> Result<Vec<u32>> {
    generate_grid_on(model, Engine::Cpu, height, width, prompt_cells, cfg, banned)
}

/// [`generate_grid`] on `engine` (the grid's forward passes on a GPU with
/// `Engine::Gpu`; the logits of the grid come back for each sampled cell).
pub fn generate_grid_on(
    model: &Model,
    engine: Engine<'_>,
    height: usize,
    width: usize,
    prompt_cells: &[u32],
    cfg: &SamplingConfig,
    banned: &[u32],
) -> Result<Vec<u32>> {
    cfg.validate()?;
    if !model.config().is_grid() {
        return Err(Error::config("model", format!("{} generates sequences: use generate", model.config().family())));
    }
    if height == 0 || width == 0 {
        return Err(Error::config("grid", format!("{height}x{width} has no cells")));
    }
    let cells = height * width;
    let vocab = model.vocab_size();
    if prompt_cells.len() > cells {
        return Err(Error::config("prompt", format!("{} prompt cells do not fit a {height}x{width} grid", prompt_cells.len())));
    }
    let mut is_banned = vec![false; vocab];
    for (what, ids) in [("banned", banned), ("prompt", prompt_cells)] {
        if let Some(id) = ids.iter().find(|&&id| id as usize >= vocab) {
            return Err(Error::config(what, format!("token id {id} is outside the vocabulary of {vocab}")));
        }
    }
    for &id in banned {
        is_banned[id as usize] = true;
    }
    if is_banned.iter().all(|&b| b) {
        return Err(Error::config("banned", "every token of the vocabulary is banned"));
    }
    let mut grid = vec![0u32; cells];
    grid[..prompt_cells.len()].copy_from_slice(prompt_cells);
    let mut cpu_model = model.clone();
    let mut forward = |grid: &[u32]| -> Result<Vec<f32>> {
        match engine {
            Engine::Cpu => {
                let mut graph = Graph::new(false);
                let logits = cpu_model.forward(&mut graph, grid, &[1, height, width])?;
                Ok(graph.value(logits).data().to_vec())
            }
            #[cfg(feature = "gpu")]
            Engine::Gpu(params) => {
                let mut graph = crate::tensor::gpu::GpuGraph::new(params.device(), false);
                let logits = model.forward_on_device(&mut graph, params, grid, &[1, height, width])?;
                graph.value(logits).to_vec()
            }
        }
    };
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut row = vec![0.0f32; vocab];
    for cell in prompt_cells.len()..cells {
        let data = forward(&grid)?;
        let src = data.get(cell * vocab..(cell + 1) * vocab).ok_or_else(|| Error::shape("generate", "grid logits smaller than the grid"))?;
        row.copy_from_slice(src);
        for (v, &b) in row.iter_mut().zip(&is_banned) {
            if b {
                *v = f32::NEG_INFINITY;
            }
        }
        grid[cell] = sample_token(&row, cfg, &mut rng);
    }
    Ok(grid)
}
