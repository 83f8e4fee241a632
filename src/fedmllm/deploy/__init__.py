"""Run fedmllm on Flower's Deployment Engine: dev TLS certificates, SuperNode keys and a loopback launcher."""
