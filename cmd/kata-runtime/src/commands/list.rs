//! `list`: every container under --root, from the records alone (no VM is asked).

use sandbox::Runtime;

pub fn list(rt: &Runtime, l: &liboci_cli::List) -> anyhow::Result<u8> {
    let states = sandbox::list(rt);
    if l.quiet {
        for s in &states {
            println!("{}", s.id);
        }
        return Ok(0);
    }
    match l.format.as_str() {
        "json" => println!("{}", serde_json::to_string(&states)?),
        "table" => {
            println!(
                "{:<12} {:<8} {:<10} {:<40} {:<31} OWNER",
                "ID", "PID", "STATUS", "BUNDLE", "CREATED"
            );
            for s in &states {
                println!(
                    "{:<12} {:<8} {:<10} {:<40} {:<31} {}",
                    s.id,
                    s.pid,
                    s.status,
                    s.bundle.display(),
                    s.created,
                    if s.owner.is_empty() { "root" } else { &s.owner }
                );
            }
        }
        other => anyhow::bail!("invalid --format {other:?} (table or json)"),
    }
    Ok(0)
}
