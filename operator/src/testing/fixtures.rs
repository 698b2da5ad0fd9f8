//! Builders of ShardedServices as the API server would return them.

use k8s_openapi::api::core::v1::{Container, ContainerPort, PodSpec, PodTemplateSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use crate::crd::{ShardedService, ShardedServiceSpec};

/// A valid ShardedService `name` in `namespace` with 3 replicas of a one-container app.
pub fn sharded_service(namespace: &str, name: &str) -> ShardedService {
    let mut svc = ShardedService::new(name, spec());
    svc.metadata = ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        uid: Some(format!("uid-{namespace}-{name}")),
        generation: Some(1),
        ..ObjectMeta::default()
    };
    svc
}

/// The spec of [`sharded_service`]: image `example/app:1`, port 8080, 3 replicas.
pub fn spec() -> ShardedServiceSpec {
    ShardedServiceSpec {
        replicas: 3,
        shards: None,
        app_port: 8080,
        template: PodTemplateSpec {
            metadata: None,
            spec: Some(PodSpec {
                containers: vec![Container {
                    name: "app".into(),
                    image: Some("example/app:1".into()),
                    ports: Some(vec![ContainerPort {
                        name: Some("http".into()),
                        container_port: 8080,
                        ..ContainerPort::default()
                    }]),
                    ..Container::default()
                }],
                ..PodSpec::default()
            }),
        },
        routing: Default::default(),
        resilience: Default::default(),
        gossip: Default::default(),
        sidecar: None,
        disruption_budget: None,
        update_strategy: None,
        security: None,
    }
}
