//! kata-agent: PID 1 of the guest. Early init (before any thread or async runtime exists), then
//! the agent API over ttrpc on a local socket, reached through a yamux server on the
//! virtio-serial port `agent.channel.0`: every yamux stream is one ttrpc connection.

mod logger;

use anyhow::Context;
use guest::reaper::{self, Reaper};
use guest::service::{Agent, HealthService};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

const AGENT_PORT_NAME: &str = "agent.channel.0";
const PORT_WAIT: Duration = Duration::from_secs(10);

fn main() {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let arg = |i: usize| args.get(i).and_then(|a| a.to_str()).unwrap_or("");
    // Re-executions of this binary as a single-threaded container helper.
    if arg(1) == guest::CONTAINER_INIT_ARG {
        guest::setup::container_init_main(Path::new(arg(2)));
    }
    if arg(1) == guest::CONTAINER_EXEC_ARG {
        guest::exec::container_exec_main(arg(2), Path::new(arg(3)));
    }
    if let Err(e) = run() {
        log::error!("kata-agent: {e:#}");
        eprintln!("kata-agent: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> anyhow::Result<()> {
    let started = Instant::now();
    let pid1 = std::process::id() == 1;
    if pid1 {
        guest::init::leave_initramfs().context("leaving the initramfs")?;
        guest::init::mount_kernel_filesystems().context("mounting kernel filesystems")?;
        if let Err(e) = guest::init::loopback_up() {
            eprintln!("kata-agent: bringing up lo: {e}");
        }
    }
    logger::init(logger::level_from_cmdline());
    let mut late_modules = Vec::new();
    if pid1 {
        let rerooted = started.elapsed();
        let (early, late) = guest::init::module_plan().context("reading the module list")?;
        let n = guest::init::load_modules(&early).context("loading kernel modules")?;
        late_modules = late;
        log::info!(
            "early init done in {:?}: root moved to tmpfs in {rerooted:?}, {n} modules loaded",
            started.elapsed()
        );
    }
    // Before any thread exists, so that every thread inherits the blocked SIGCHLD.
    reaper::block_sigchld().context("blocking SIGCHLD")?;
    let reaper = Reaper::start().context("starting the reaper")?;
    if pid1 {
        guest::cgroup::enable_controllers();
    }
    if late_modules.is_empty() {
        guest::init::mark_late_modules_done();
    } else {
        guest::init::load_late_modules_in_background(late_modules)
            .context("starting the module loader")?;
    }

    let socket = Path::new(guest::AGENT_SOCKET);
    if let Some(dir) = socket.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(socket);
    let agent = Arc::new(Agent::new(reaper));
    let mut server = ttrpc::Server::new()
        .bind(&format!("unix://{}", socket.display()))
        .context("binding the agent socket")?
        .register_service(protocols::agent_ttrpc::create_agent_service(agent))
        .register_service(protocols::health_ttrpc::create_health(Arc::new(
            HealthService,
        )));
    server.start().context("starting the ttrpc server")?;

    let port = wait_for_port()?;
    log::info!(
        "serving on {} after {:?}",
        port.display(),
        started.elapsed()
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the async runtime")?;
    rt.block_on(async {
        // The host proxy may come and go (and a session may end): serve again each time.
        loop {
            match mux::open_port(&port) {
                Ok(io) => {
                    if let Err(e) = mux::serve_guest(io, socket.to_path_buf()).await {
                        log::warn!("agent channel session ended: {e}");
                    }
                }
                Err(e) => log::warn!("opening {}: {e}", port.display()),
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
}

fn wait_for_port() -> anyhow::Result<std::path::PathBuf> {
    let start = Instant::now();
    loop {
        match mux::find_port_by_name(AGENT_PORT_NAME) {
            Ok(p) => return Ok(p),
            Err(e) if start.elapsed() > PORT_WAIT => {
                return Err(e).context("no virtio-serial port for the agent channel")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(5)),
        }
    }
}
