//! Decoding (and, with the keys, decrypting) values as kube-apiserver stores them in etcd.
