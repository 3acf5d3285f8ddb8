//! Cluster DNS: kubeboot's replacement for CoreDNS where no CoreDNS image is available,
//! run as `kubeboot dns` in the `kube-system/kubeboot-dns` Deployment behind the unchanged
//! `kube-dns` Service.
//!
//! Why a Deployment of an image each node builds from its own kubeboot executable, and not
//! an agent static pod: the endpoints controller copies a pod's `spec.nodeName` into its
//! EndpointAddress, and the agent's published pods have none, which validation refuses
//! (pkg/apis/core/validation validateEpAddress), failing the whole `kube-dns` Endpoints
//! update. Pods the kubelet runs have a node name under either static pod runner. The pods
//! carry `k8s-app: kube-dns`, so the `kube-dns` Service (10.96.0.10) selects them and
//! kube-proxy sends pods' queries to them; they are ready only once the Service and Endpoints
//! watches have synced.
//!
//! The server answers from memory and follows the Kubernetes DNS-based service discovery
//! specification (kubernetes/dns docs/specification.md) the way CoreDNS's kubernetes plugin
//! does with kubeadm's Corefile: A/AAAA/SRV/CNAME/PTR/TXT for Services, Endpoints and pod
//! IPs in the cluster domain, NXDOMAIN/NODATA with the zone's SOA, names outside it relayed
//! to the node's upstream resolvers (or a stub domain's servers), never to itself. The
//! wire format is hickory-proto's; no packet is built or read by hand.
//!
//! The pure half (no sockets, files or clock):
//! - [`store`]: the records, kept from the Service and Endpoints watches (no k8s objects).
//! - [`answer`]: one query packet -> reply bytes, a relay, or nothing; the response codes
//!   and the truncation rules are there.
//! - [`corefile`]: the `coredns` ConfigMap's Corefile -> forwarders, stub domains, TTL, pod
//!   mode, and a warning for everything else.
//!
//! The I/O half:
//! - [`serve`]: the UDP and TCP listeners (bounded: relays, connections, message sizes), and
//!   [`serve::run`], the whole `kubeboot dns` process.
//! - [`upstream`]: relaying a query to the upstream resolvers, SERVFAIL when they all fail.
//! - [`watch`]: Services, Endpoints and the Corefile ConfigMap from the API; the resolv.conf.
//! - [`health`]: `/health` and `/ready` for the pods' probes.

pub mod answer;
pub mod corefile;
pub mod store;

pub mod health;
pub mod serve;
pub mod upstream;
pub mod watch;
