//! Task events to containerd, in the order they happen: one thread owns the publisher and
//! sends what the handlers and the exit watchers queue.

use containerd_shim::event::Event;
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;
use std::sync::mpsc;

#[derive(Clone)]
pub struct Events {
    queue: mpsc::Sender<(String, Box<dyn MessageDyn>)>,
}

impl Events {
    pub fn start(publisher: RemotePublisher, namespace: String) -> Events {
        let (queue, rx) = mpsc::channel::<(String, Box<dyn MessageDyn>)>();
        let _ = std::thread::Builder::new()
            .name("events".into())
            .spawn(move || {
                for (topic, event) in rx {
                    if let Err(e) = publisher.publish(Context::default(), &topic, &namespace, event)
                    {
                        log::warn!("publishing {topic}: {e}");
                    }
                }
            });
        Events { queue }
    }

    pub fn send<E: Event + MessageDyn + 'static>(&self, event: E) {
        let _ = self.queue.send((event.topic(), Box::new(event)));
    }
}
