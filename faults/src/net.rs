//! A network namespace joined to this one by a veth pair, and iptables rules inside it: the
//! platform runs there, so its traffic can be dropped, thinned or blackholed without touching
//! anything this suite did not make.

use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;

use anyhow::{bail, Context, Result};

/// A namespace `ewf-<id>` with `10.231.<n>.2`, reachable from here at `10.231.<n>.1`.
pub struct Lab {
    /// Namespace name.
    pub ns: String,
    /// The veth end inside the namespace.
    inner: String,
    /// The namespace's address.
    pub ip: IpAddr,
}

/// Runs a command; its stderr in the error.
pub fn run(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .output()
        .with_context(|| format!("cannot run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> Result<String> {
    run(Command::new("ip").args(args))
}

impl Lab {
    /// Creates the namespace and the veth pair; removed when dropped.
    pub fn create() -> Result<Lab> {
        let id = std::process::id() % 100_000;
        let n = 1 + id % 250;
        let ns = format!("ewf-{id}");
        let (outer, inner) = (format!("ewf{id}h"), format!("ewf{id}n"));
        let _ = ip(&["netns", "del", &ns]);
        ip(&["netns", "add", &ns]).context("network namespaces need root (CAP_NET_ADMIN)")?;
        let lab = Lab {
            ns: ns.clone(),
            inner: inner.clone(),
            ip: IpAddr::V4(Ipv4Addr::new(10, 231, n as u8, 2)),
        };
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ])?;
        ip(&["link", "set", &inner, "netns", &ns])?;
        ip(&["addr", "add", &format!("10.231.{n}.1/24"), "dev", &outer])?;
        ip(&["link", "set", &outer, "up"])?;
        lab.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.231.{n}.2/24"),
            "dev",
            &inner,
        ])?;
        lab.exec(&["ip", "link", "set", &inner, "up"])?;
        lab.exec(&["ip", "link", "set", "lo", "up"])?;
        Ok(lab)
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, args: &[&str]) -> Result<String> {
        let mut all = vec!["netns", "exec", &self.ns];
        all.extend_from_slice(args);
        ip(&all)
    }

    /// A command that runs `program` inside the namespace.
    pub fn command(&self, program: &std::path::Path) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns]).arg(program);
        c
    }

    /// Drops every packet on the namespace's link, both ways, silently: a half-open path.
    pub fn blackhole(&self) -> Result<()> {
        self.rule(&["-A", "INPUT", "-i", &self.inner, "-j", "DROP"])?;
        self.rule(&["-A", "OUTPUT", "-o", &self.inner, "-j", "DROP"])
    }

    /// Drops packets to one TCP port of the namespace (new and established alike).
    pub fn block_port(&self, port: u16) -> Result<()> {
        let port = port.to_string();
        self.rule(&[
            "-A",
            "INPUT",
            "-i",
            &self.inner,
            "-p",
            "tcp",
            "--dport",
            &port,
            "-j",
            "DROP",
        ])
    }

    /// Drops `percent` % of the packets each way at random.
    pub fn loss(&self, percent: u32) -> Result<()> {
        let p = format!("{:.2}", f64::from(percent) / 100.0);
        for (chain, dir) in [("INPUT", "-i"), ("OUTPUT", "-o")] {
            self.rule(&[
                "-A",
                chain,
                dir,
                &self.inner,
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &p,
                "-j",
                "DROP",
            ])?;
        }
        Ok(())
    }

    /// Removes every rule: the link is clean again.
    pub fn heal(&self) -> Result<()> {
        self.rule(&["-F", "INPUT"])?;
        self.rule(&["-F", "OUTPUT"])
    }

    fn rule(&self, args: &[&str]) -> Result<()> {
        let mut all = vec!["iptables"];
        all.extend_from_slice(args);
        self.exec(&all).map(drop)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Deleting the namespace deletes its veth end, and with it the pair.
        let _ = ip(&["netns", "del", &self.ns]);
    }
}
