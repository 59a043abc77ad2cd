//! A per-layer filter that is asked about every span and event, never answering from a
//! cached `Interest::always`.
//!
//! Owns: working around tokio-rs/tracing#2519. tracing-subscriber hands a per-layer
//! filter's decision from `enabled()` to the layer's `on_event`/`on_new_span` through a
//! thread-local bitmap. A callsite whose interest is cached as `always` skips `enabled()`,
//! so the layer reads whatever the last `enabled()` call on that thread left there. sqlx
//! asks the dispatcher whether its query log is enabled (with its own metadata) after every
//! statement, so an event right after a query on the same thread could be dropped from the
//! log (and, upstream reports, a span from the exported trace): on PostgreSQL the
//! group-commit writer's `store batch phases` line never appeared, though it ran. Capping
//! the interest at `sometimes` makes `enabled()` run for every span and event, so the
//! bitmap is always the current one. (The fix proposed upstream, tokio-rs/tracing#3572, is
//! the same cap, in the registry.)
//! Must not: change what the wrapped filter accepts.

use tracing::subscriber::Interest;
use tracing::{span, Event, Metadata};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::{Context, Filter};

/// `F`, asked every time.
pub struct FreshFilter<F>(pub F);

impl<S, F: Filter<S>> Filter<S> for FreshFilter<F> {
    fn enabled(&self, meta: &Metadata<'_>, cx: &Context<'_, S>) -> bool {
        self.0.enabled(meta, cx)
    }

    fn callsite_enabled(&self, meta: &'static Metadata<'static>) -> Interest {
        let interest = self.0.callsite_enabled(meta);
        if interest.is_always() {
            Interest::sometimes()
        } else {
            interest
        }
    }

    fn event_enabled(&self, event: &Event<'_>, cx: &Context<'_, S>) -> bool {
        self.0.event_enabled(event, cx)
    }

    fn max_level_hint(&self) -> Option<LevelFilter> {
        self.0.max_level_hint()
    }

    fn on_new_span(&self, attrs: &span::Attributes<'_>, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_new_span(attrs, id, cx)
    }

    fn on_record(&self, id: &span::Id, values: &span::Record<'_>, cx: Context<'_, S>) {
        self.0.on_record(id, values, cx)
    }

    fn on_enter(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_enter(id, cx)
    }

    fn on_exit(&self, id: &span::Id, cx: Context<'_, S>) {
        self.0.on_exit(id, cx)
    }

    fn on_close(&self, id: span::Id, cx: Context<'_, S>) {
        self.0.on_close(id, cx)
    }
}
