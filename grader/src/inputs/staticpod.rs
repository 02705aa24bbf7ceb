//! Static pod manifests (kube-apiserver, etcd) and the flags in their `command` and `args`.
