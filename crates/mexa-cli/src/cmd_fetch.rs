//! `fetch`: download a model by Hugging Face id into the Hugging Face cache ahead of a run
//! (e.g. on a login node before a Slurm job whose compute nodes have no network).
use anyhow::{bail, Result};
use clap::Args;
use mexa_store::download::{offline, Hub};
use mexa_store::models::{hub_cache, parse_hub_id};

#[derive(Args)]
pub struct FetchArgs {
    /// The model: `owner/name` or `owner/name@revision` (a branch, tag or commit).
    id: String,
    /// Only this file (repeatable), e.g. one GGUF of a repository that holds several. By
    /// default: the files mexa's loader reads (config.json, tokenizer files, safetensors
    /// weights or shards; or the repository's one .gguf and tokenizer.json).
    #[arg(long = "file", value_name = "NAME")]
    files: Vec<String>,
    /// No progress bars (they are also off when stderr is not a terminal).
    #[arg(long)]
    no_progress: bool,
}

pub fn fetch(a: FetchArgs, quiet: bool) -> Result<i32> {
    let Some((owner, name, rev)) = parse_hub_id(&a.id) else {
        bail!("`{}` is not a Hugging Face id: expected owner/name or owner/name@revision", a.id);
    };
    if offline() {
        bail!("HF_HUB_OFFLINE is set, so nothing can be downloaded: unset it to fetch {owner}/{name}");
    }
    let mut hub = Hub::from_env();
    hub.progress = !(a.no_progress || quiet);
    let cache = hub_cache();
    let got = hub.fetch(owner, name, rev, &cache, &a.files)?;
    if !quiet {
        for f in &got.files {
            let how = match (f.downloaded, f.resumed_from) {
                (false, _) => "cached    ".to_string(),
                (true, 0) => "downloaded".to_string(),
                (true, n) => format!("resumed at {n} bytes, downloaded"),
            };
            println!("{how} {} ({:.1} MB)", f.name, f.bytes as f64 / 1e6);
        }
        println!("{}@{rev} is commit {} in {}", got.repo, got.commit, got.snapshot.display());
        println!(
            "pipelines can name it `model: {}` (found in the cache; HF_HUB_OFFLINE=1 keeps runs from going online)",
            a.id
        );
    }
    Ok(0)
}
