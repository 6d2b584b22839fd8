//! Background subscriptions for polymongo plugins written with [`polymongo_guest`].
//!
//! A plugin whose manifest declares `[[subscriptions]]` (see `docs/STREAMS.md`) exports
//! `subscriber` beside `handler` (world `polymongo:plugin/tenant-subscriber@0.2.0`): implement
//! [`polymongo_guest::Plugin`] and [`Subscriber`], and export both with
//! [`export_subscriber!`] instead of `export_plugin!`. Everything else (`Db`, collections,
//! change streams, logging) is `polymongo_guest`'s.
//!
//! Delivery is at least once: returning `Err` (or panicking) makes the host back off and
//! deliver the same events again, and a batch in flight when the host stopped is delivered
//! again after the restart. Make [`Subscriber::deliver`] idempotent, e.g. upsert by the event's
//! `_id` (its resume token).

#![warn(missing_docs)]

// Lets the generated bindings name this crate as `::polymongo_guest_subscriber` both here and
// in the plugin crates that expand the export macro.
extern crate self as polymongo_guest_subscriber;

use bson::Document;

/// The bindings for the world `tenant-subscriber@0.2.0`. The imports are
/// `polymongo_guest::raw`'s (so the SDK's `Db` works as usual); the exports are `handler` and
/// `subscriber`, exported with [`raw::export!`] (through [`export_subscriber!`]).
#[allow(missing_docs)]
pub mod raw {
    wit_bindgen::generate!({
        world: "polymongo:plugin/tenant-subscriber@0.2.0",
        path: ["../../wit", "../../wit/v0.2"],
        with: {
            "polymongo:plugin/types@0.1.0": polymongo_guest::raw::polymongo::plugin0_1_0::types,
            "polymongo:plugin/database@0.1.0": polymongo_guest::raw::polymongo::plugin0_1_0::database,
            "polymongo:plugin/log@0.1.0": polymongo_guest::raw::polymongo::plugin0_1_0::log,
            "polymongo:plugin/streams@0.2.0": polymongo_guest::raw::polymongo::plugin0_2_0::streams,
            "polymongo:plugin/transactions@0.2.0": polymongo_guest::raw::polymongo::plugin0_2_0::transactions,
        },
        pub_export_macro: true,
        default_bindings_module: "::polymongo_guest_subscriber::raw",
        runtime_path: "::polymongo_guest::__private::wit_bindgen::rt",
    });
}

/// One delivery of change events.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// The tenant the events are for; `Db::tenant()` is its database.
    pub tenant: String,
    /// The subscription's name (from the manifest).
    pub subscription: String,
    /// The change events, in order (`_id` is each event's resume token, then
    /// `operationType`, `documentKey`, `fullDocument`, ...).
    pub events: Vec<Document>,
}

/// A plugin that consumes its subscriptions' change events in the background.
pub trait Subscriber {
    /// Handles one batch of events; `Err` makes the host deliver it again after a back-off.
    fn deliver(delivery: Delivery) -> Result<(), String>;
}

#[doc(hidden)]
pub mod __private {
    use super::Delivery;
    use bson::Document;

    /// Decodes a delivery's events (the host sends BSON; an undecodable one is an error, so
    /// the batch comes again rather than being half handled).
    pub fn decode(
        tenant: String,
        subscription: String,
        events: Vec<Vec<u8>>,
    ) -> Result<Delivery, String> {
        let events = events
            .iter()
            .map(|bytes| {
                Document::from_reader(bytes.as_slice())
                    .map_err(|e| format!("an event is not BSON: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Delivery {
            tenant,
            subscription,
            events,
        })
    }
}

/// Exports a type implementing [`polymongo_guest::Plugin`] and [`Subscriber`] as the
/// component's `handler` and `subscriber`. Use it once, at the top level of the plugin crate,
/// instead of `polymongo_guest::export_plugin!`:
///
/// ```no_run
/// use polymongo_guest::{Plugin, Request, Response};
/// use polymongo_guest_subscriber::{export_subscriber, Delivery, Subscriber};
///
/// struct Audit;
///
/// impl Plugin for Audit {
///     fn handle(_req: Request) -> Response {
///         Response::text(200, "ok")
///     }
/// }
///
/// impl Subscriber for Audit {
///     fn deliver(delivery: Delivery) -> Result<(), String> {
///         for _event in &delivery.events {
///             // upsert something keyed by the event's `_id`
///         }
///         Ok(())
///     }
/// }
///
/// export_subscriber!(Audit);
/// ```
#[macro_export]
macro_rules! export_subscriber {
    ($plugin:ty) => {
        #[doc(hidden)]
        #[allow(non_camel_case_types)]
        struct __PolymongoSubscriberExport;

        impl $crate::raw::exports::polymongo::plugin0_1_0::handler::Guest
            for __PolymongoSubscriberExport
        {
            fn handle(
                req: $crate::raw::exports::polymongo::plugin0_1_0::handler::Request,
            ) -> $crate::raw::exports::polymongo::plugin0_1_0::handler::Response {
                let req = ::polymongo_guest::raw::exports::polymongo::plugin0_1_0::handler::Request {
                    method: req.method,
                    path: req.path,
                    query: req.query,
                    headers: req.headers,
                    body: req.body,
                    tenant: req.tenant,
                };
                let resp = ::polymongo_guest::__private::dispatch::<$plugin>(req);
                $crate::raw::exports::polymongo::plugin0_1_0::handler::Response {
                    status: resp.status,
                    headers: resp.headers,
                    body: resp.body,
                }
            }
        }

        impl $crate::raw::exports::polymongo::plugin0_2_0::subscriber::Guest
            for __PolymongoSubscriberExport
        {
            fn deliver(
                tenant: ::std::string::String,
                subscription: ::std::string::String,
                events: ::std::vec::Vec<::std::vec::Vec<u8>>,
            ) -> ::std::result::Result<(), ::std::string::String> {
                let delivery = $crate::__private::decode(tenant, subscription, events)?;
                <$plugin as $crate::Subscriber>::deliver(delivery)
            }
        }

        $crate::raw::export!(__PolymongoSubscriberExport with_types_in $crate::raw);
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deliveries_decode_bson_events_and_refuse_garbage() {
        let mut bytes = Vec::new();
        bson::doc! { "_id": { "_data": "01" }, "operationType": "insert" }
            .to_writer(&mut bytes)
            .expect("encodable");
        let d = __private::decode("acme".into(), "feed".into(), vec![bytes]).expect("BSON");
        assert_eq!(d.events[0].get_str("operationType"), Ok("insert"));
        assert_eq!(
            (d.tenant.as_str(), d.subscription.as_str()),
            ("acme", "feed")
        );
        let err = __private::decode("a".into(), "f".into(), vec![vec![1, 2, 3]]).unwrap_err();
        assert!(err.contains("not BSON"), "{err}");
    }
}
