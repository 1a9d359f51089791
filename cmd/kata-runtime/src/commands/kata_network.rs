//! `kata-network`: the VM's interfaces and routes.

use crate::cli::KataNetwork;
use anyhow::Context;
use sandbox::{kata_network as net, Runtime};
use std::io::Read;
use std::path::Path;

fn input(path: &Path) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut text = Vec::new();
        std::io::stdin()
            .read_to_end(&mut text)
            .context("reading JSON from stdin")?;
        return Ok(text);
    }
    std::fs::read(path).with_context(|| format!("reading {}", path.display()))
}

fn print<T: ?Sized + serde::Serialize>(value: &T) -> anyhow::Result<u8> {
    println!(
        "{}",
        serde_json::to_string_pretty(value).context("printing JSON")?
    );
    Ok(0)
}

pub fn run(rt: &Runtime, verb: &KataNetwork) -> anyhow::Result<u8> {
    match verb {
        KataNetwork::AddIface(a) => {
            print(&net::add_interface(rt, &a.container_id, &input(&a.file)?)?)
        }
        KataNetwork::DelIface(a) => {
            print(&net::del_interface(rt, &a.container_id, &input(&a.file)?)?)
        }
        KataNetwork::ListIfaces(t) => print(&net::list_interfaces(rt, &t.container_id)?),
        KataNetwork::UpdateRoutes(a) => {
            print(&net::update_routes(rt, &a.container_id, &input(&a.file)?)?)
        }
        KataNetwork::ListRoutes(t) => print(&net::list_routes(rt, &t.container_id)?),
    }
}
