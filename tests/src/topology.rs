//! A routed IMDS: the hop-limit case for real, in four network namespaces.
//!
//! ```text
//!   far ──veth── router ──veth── imds (169.254.169.254 on its veth, mock IMDS)
//!                                  │
//!   direct ───────────veth─────────┘
//! ```
//!
//! `far` reaches the IMDS address through `router` (one forwarding hop, `ip_forward=1`);
//! `direct` sits on a link of its own straight to `imds`. With the mock's
//! `--put-response-ttl 1` (EC2's `HttpPutResponseHopLimit=1`) the token PUT's answer leaves
//! `imds` with IP TTL 1: it reaches `direct`, while `router` drops it (TTL exceeded) on its
//! way to `far` — exactly what happens to a bridged container on an instance with the default
//! hop limit. Every other answer has the normal TTL and reaches both.
//!
//! The `10.255.x.x/30` link addresses exist only inside these namespaces; nothing here is
//! connected to the host's namespace or any real network. Drop stops the mock and deletes
//! the namespaces (which deletes their veths).

use std::path::PathBuf;

use anyhow::Context as _;

use crate::netns::{IMDS_V4, Mock, MockOptions, ip};

/// Where `ip netns add` pins namespaces.
const NETNS_DIR: &str = "/run/netns";

/// Guard for the four namespaces and the mock IMDS in `imds`.
pub struct RoutedImds {
    /// Namespace names, in creation order (deleted in reverse).
    namespaces: Vec<String>,
    mock: Option<Mock>,
    prefix: String,
}

/// One veth link: `(namespace a, interface a, address a, namespace b, interface b, address b)`.
struct Link {
    a: (&'static str, &'static str, &'static str),
    b: (&'static str, &'static str, &'static str),
}

/// The links. Interface names are per namespace, so they never clash across tests.
const LINKS: [Link; 3] = [
    Link {
        a: ("imds", "im0", "10.255.0.2/30"),
        b: ("router", "ri0", "10.255.0.1/30"),
    },
    Link {
        a: ("far", "fr0", "10.255.1.2/30"),
        b: ("router", "rf0", "10.255.1.1/30"),
    },
    Link {
        a: ("direct", "di0", "10.255.2.2/30"),
        b: ("imds", "id0", "10.255.2.1/30"),
    },
];

/// `(namespace, ip route arguments)`.
const ROUTES: [(&str, &[&str]); 4] = [
    // The router reaches IMDS through imds's link address.
    (
        "router",
        &["169.254.169.254/32", "via", "10.255.0.2", "dev", "ri0"],
    ),
    // imds answers far through the router; direct is on a connected /30.
    (
        "imds",
        &["10.255.1.0/30", "via", "10.255.0.1", "dev", "im0"],
    ),
    ("far", &["default", "via", "10.255.1.1", "dev", "fr0"]),
    (
        "direct",
        &["169.254.169.254/32", "via", "10.255.2.1", "dev", "di0"],
    ),
];

impl RoutedImds {
    /// Create `<prefix>-{imds,router,far,direct}`, wire them up and start the mock in
    /// `<prefix>-imds` with `mock` options (e.g. `put_response_ttl: Some(1)`).
    pub fn create(prefix: &str, mock: &MockOptions) -> anyhow::Result<Self> {
        let mut topology = Self {
            namespaces: Vec::new(),
            mock: None,
            prefix: prefix.to_owned(),
        };
        for role in ["imds", "router", "far", "direct"] {
            let name = topology.name(role);
            ip(&["netns", "add", &name])?;
            topology.namespaces.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        for Link { a, b } in &LINKS {
            let (ns_a, ns_b) = (topology.name(a.0), topology.name(b.0));
            ip(&[
                "-n", &ns_a, "link", "add", a.1, "type", "veth", "peer", "name", b.1, "netns",
                &ns_b,
            ])?;
            ip(&["-n", &ns_a, "addr", "add", a.2, "dev", a.1])?;
            ip(&["-n", &ns_b, "addr", "add", b.2, "dev", b.1])?;
            ip(&["-n", &ns_a, "link", "set", a.1, "up"])?;
            ip(&["-n", &ns_b, "link", "set", b.1, "up"])?;
        }
        let imds = topology.name("imds");
        ip(&[
            "-n",
            &imds,
            "addr",
            "add",
            &format!("{IMDS_V4}/32"),
            "dev",
            "im0",
        ])?;
        let router = topology.name("router");
        // /proc/sys/net is the writer's network namespace's.
        ip(&[
            "netns",
            "exec",
            &router,
            "sh",
            "-c",
            "echo 1 > /proc/sys/net/ipv4/ip_forward",
        ])
        .context("enabling forwarding in the router namespace")?;
        for (role, route) in ROUTES {
            let ns = topology.name(role);
            let mut args = vec!["-n", ns.as_str(), "route", "add"];
            args.extend_from_slice(route);
            ip(&args)?;
        }
        topology.mock = Some(Mock::start(&imds, mock)?);
        Ok(topology)
    }

    fn name(&self, role: &str) -> String {
        format!("{}-{role}", self.prefix)
    }

    /// The namespace file of the client one router hop away from IMDS.
    pub fn far(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(self.name("far"))
    }

    /// The namespace file of the client on IMDS's own link (no router in between).
    pub fn direct(&self) -> PathBuf {
        PathBuf::from(NETNS_DIR).join(self.name("direct"))
    }

    /// What the mock logged so far (source address, method, path, status per request).
    pub fn mock_log(&self) -> String {
        self.mock.as_ref().map(Mock::log).unwrap_or_default()
    }
}

impl Drop for RoutedImds {
    fn drop(&mut self) {
        drop(self.mock.take());
        for name in self.namespaces.iter().rev() {
            if let Err(e) = ip(&["netns", "delete", name]) {
                eprintln!("warning: could not delete netns {name}: {e:#}");
            }
        }
    }
}
