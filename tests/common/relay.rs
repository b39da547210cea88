//! A TCP relay the test controls, between one process and the
//! kube-apiserver. `cut` partitions them: nothing is forwarded any more, on
//! established connections too, and new ones are accepted but never
//! answered, so requests hang (as when a node loses its network) instead of
//! failing fast.

use std::net::SocketAddr;
use std::path::PathBuf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct Relay {
    pub port: u16,
    cut: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Relay {
    /// Relays loopback connections to `target`.
    pub async fn start(target: SocketAddr) -> Relay {
        Self::start_at("127.0.0.1", target).await
    }

    /// Relays connections to `ip` (an address of this host) to `target`.
    pub async fn start_at(ip: &str, target: SocketAddr) -> Relay {
        let listener = TcpListener::bind((ip, 0)).await.expect("bind relay");
        let port = listener.local_addr().unwrap().port();
        let (cut, rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut parked = Vec::new();
            while let Ok((inbound, _)) = listener.accept().await {
                if *rx.borrow() {
                    parked.push(inbound);
                    continue;
                }
                tokio::spawn(forward(inbound, target, rx.clone()));
            }
        });
        Relay { port, cut, task }
    }

    /// Relays to the apiserver of `KUBECONFIG`; the kubeconfig to give the
    /// process instead, and the relay.
    pub async fn to_apiserver() -> (Relay, PathBuf) {
        Self::to_apiserver_at("127.0.0.1").await
    }

    /// As [`Relay::to_apiserver`], listening on `ip`: for a process in
    /// another network namespace (the lab's nodes reach the host at
    /// 10.99.0.1, which the envtest certificate names).
    pub async fn to_apiserver_at(ip: &str) -> (Relay, PathBuf) {
        let path = std::env::var("KUBECONFIG").expect("KUBECONFIG");
        let text = std::fs::read_to_string(&path).expect("read KUBECONFIG");
        let server = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("server:"))
            .expect("a server in KUBECONFIG")
            .trim()
            .trim_matches('"')
            .to_owned();
        let hostport = server
            .trim_start_matches("https://")
            .trim_end_matches('/')
            .to_owned();
        let target: SocketAddr = hostport.parse().expect("the server is ip:port");
        let relay = Relay::start_at(ip, target).await;
        let relayed = text.replace(&server, &format!("https://{ip}:{}", relay.port));
        let out = std::env::temp_dir().join(format!("mvconf-relay-{}.kubeconfig", relay.port));
        std::fs::write(&out, relayed).expect("write the relayed kubeconfig");
        (relay, out)
    }

    /// From now on nothing passes, either way.
    pub fn cut(&self) {
        self.cut.send_replace(true);
    }
}

async fn forward(mut inbound: TcpStream, target: SocketAddr, mut cut: watch::Receiver<bool>) {
    let Ok(mut outbound) = TcpStream::connect(target).await else {
        return;
    };
    let was_cut = tokio::select! {
        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => false,
        _ = cut.wait_for(|c| *c) => true,
    };
    if was_cut {
        // Both ends stay open and silent until the relay is dropped.
        let _ = cut.wait_for(|c| !*c).await;
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}
