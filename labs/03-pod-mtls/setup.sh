#!/usr/bin/env bash
# Lab 3's starting state: in namespace shop, a frontend that calls the backend every two seconds
# with a bearer token, over plain HTTP; in namespace legacy, a client outside any mesh. Idempotent.
set -euo pipefail

kubectl apply -f - <<'YAML'
apiVersion: v1
kind: Namespace
metadata:
  name: shop
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: backend
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: backend}
  template:
    metadata:
      labels: {app: backend}
    spec:
      containers:
        - name: api
          image: busybox:1.36
          command: ["sh", "-c", "mkdir -p /www && echo '[{\"order\":1042,\"card\":\"4111-xxxx-xxxx-1111\"}]' > /www/orders && exec httpd -f -p 8080 -h /www"]
          ports:
            - name: http
              containerPort: 8080
---
apiVersion: v1
kind: Service
metadata:
  name: backend
  namespace: shop
spec:
  selector: {app: backend}
  ports:
    - name: http
      port: 8080
      targetPort: http
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: frontend
  namespace: shop
spec:
  replicas: 1
  selector:
    matchLabels: {app: frontend}
  template:
    metadata:
      labels: {app: frontend}
    spec:
      containers:
        - name: web
          image: busybox:1.36
          command:
            - sh
            - -c
            - |
              while true; do
                wget -q -O /dev/null --header 'Authorization: Bearer shop-token-4f9a2c71' http://backend:8080/orders
                sleep 2
              done
---
apiVersion: v1
kind: Namespace
metadata:
  name: legacy
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: legacy-client
  namespace: legacy
spec:
  replicas: 1
  selector:
    matchLabels: {app: legacy-client}
  template:
    metadata:
      labels: {app: legacy-client}
    spec:
      containers:
        - name: client
          image: busybox:1.36
          command: ["sh", "-c", "while true; do sleep 3600; done"]
YAML
kubectl label namespace shop istio-injection- >/dev/null
kubectl delete peerauthentications.security.istio.io --all -n shop --ignore-not-found >/dev/null 2>&1 || true
echo "lab 3 ready: shop/frontend calls shop/backend over plain HTTP with a bearer token"
