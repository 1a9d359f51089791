//! kata-osbuilder: builds the guest image (vmlinux, initramfs, manifest) from a kernel and the agent.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Parser;
use guest_image::{BuildOptions, KernelInput};

#[derive(Parser, Debug)]
#[command(
    name = "kata-osbuilder",
    about = "Build the guest vmlinux, initrd.img and manifest.json"
)]
struct Args {
    /// Folder of a kernel built from source (see scripts/build-guest-kernel.sh).
    #[arg(
        long,
        value_name = "DIR",
        required_unless_present = "kernel_deb",
        conflicts_with = "kernel_deb"
    )]
    kernel_dir: Option<PathBuf>,
    /// Debian linux-image-<abi>-amd64 package (see scripts/fetch-guest-kernel.sh).
    #[arg(long, value_name = "PATH")]
    kernel_deb: Option<PathBuf>,
    /// Static agent binary, installed as /init.
    #[arg(long, value_name = "PATH")]
    agent: PathBuf,
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// Module to add to the default set (with its dependencies), e.g. ext4; --kernel-deb only.
    /// Repeatable.
    #[arg(long = "extra-module", value_name = "NAME")]
    extra_modules: Vec<String>,
    /// Log debug details.
    #[arg(short, long)]
    verbose: bool,
}

/// Minimal stderr logger: the image builder has no other log sink and needs no filtering
/// beyond a level.
struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }
    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!(
                "kata-osbuilder: {}: {}",
                record.level().as_str().to_lowercase(),
                record.args()
            );
        }
    }
    fn flush(&self) {}
}

static LOGGER: StderrLogger = StderrLogger;

fn main() -> Result<()> {
    let args = Args::parse();
    // set_logger only fails if a logger is already set, which cannot happen this early.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(if args.verbose {
        log::LevelFilter::Debug
    } else {
        log::LevelFilter::Info
    });

    let kernel = match (&args.kernel_dir, &args.kernel_deb) {
        (Some(dir), _) => KernelInput::Built(dir.clone()),
        (None, Some(deb)) => KernelInput::DebianPackage(deb.clone()),
        (None, None) => anyhow::bail!("one of --kernel-dir and --kernel-deb is needed"),
    };
    let mut opts = BuildOptions::new(kernel, args.agent.clone(), args.out.clone());
    opts.modules.extend(args.extra_modules);

    let started = Instant::now();
    let manifest = guest_image::build(&opts).with_context(|| {
        format!(
            "building the guest image from {} and {} into {}",
            opts.kernel.path().display(),
            args.agent.display(),
            args.out.display()
        )
    })?;
    log::info!(
        "wrote {} ({} modules, initrd {} bytes) in {:.2}s",
        args.out.display(),
        manifest.modules.len(),
        manifest.initrd_size,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}
