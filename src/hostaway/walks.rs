//! The walks over Hostaway's paged listings of one account: offset paging
//! (`limit`/`offset`, API.md §2.5) and the reservations' `afterId` cursor
//! (§4.2). Each walk is bounded by `hostaway.max_pages` and by pages that
//! stop bringing anything new, and proves its result complete against the
//! announced `count` (`paging::Collected`), walking once more before it
//! fails with `HostawayError::Incomplete`.

use std::collections::HashSet;

use futures::{StreamExt, TryStreamExt};
use reqwest::Method;
use serde_json::Value;

use super::client::{AccountClient, entity_of, result_array};
use super::error::HostawayError;
use super::paging::{self, Collected};
use super::transport::Call;

impl AccountClient {
    /// One page request of `path`, with `extra` query parameters.
    fn page_call(
        path: &str,
        endpoint: &'static str,
        extra: &[(&'static str, String)],
        paging: [(&'static str, Option<i64>); 2],
    ) -> Call {
        let mut call = Call::new(Method::GET, path, endpoint);
        for (key, value) in paging {
            if let Some(value) = value {
                call = call.query(key, value);
            }
        }
        call.query.extend(extra.iter().cloned());
        call
    }

    /// Adds a page to a walk and tells the observer what it brought.
    fn add_page(
        &self,
        collected: &mut Collected,
        endpoint: &'static str,
        count: Option<i64>,
        items: Vec<Value>,
    ) -> usize {
        let new = collected.add_page(count, items);
        if let Some(observer) = &self.observer {
            let announced = count.and_then(|c| u64::try_from(c).ok());
            observer.page(entity_of(endpoint), announced, new);
        }
        new
    }

    /// Counts an incomplete listing and turns it into an error.
    fn incomplete(
        &self,
        endpoint: &'static str,
        (expected, received): (u64, u64),
    ) -> HostawayError {
        self.client
            .inner
            .metrics
            .sync_incomplete
            .with_label_values(&[entity_of(endpoint)])
            .inc();
        tracing::warn!(
            endpoint,
            expected,
            received,
            "Hostaway served fewer distinct items than it announced"
        );
        HostawayError::Incomplete {
            endpoint: endpoint.to_string(),
            expected,
            received,
        }
    }

    /// `first` when it is complete; otherwise (counted and logged) a second
    /// walk with offset paging, one page at a time, or the error if that is
    /// still short of the announced `count`.
    async fn complete_or_walk_again(
        &self,
        path: &str,
        endpoint: &'static str,
        extra: &[(&'static str, String)],
        first: Collected,
    ) -> Result<Vec<Value>, HostawayError> {
        let Some(short) = first.shortfall() else {
            return Ok(first.into_items());
        };
        self.incomplete(endpoint, short);
        tracing::info!(endpoint, "walking the listing again with offset paging");
        let second = self.walk_offsets(path, endpoint, extra, false).await?;
        match second.shortfall() {
            None => Ok(second.into_items()),
            Some(short) => Err(self.incomplete(endpoint, short)),
        }
    }

    /// Pages with `limit`/`offset` (API.md §2.5) and proves the result
    /// complete: a walk that ends short of the announced `count` is walked
    /// once more, then fails with `HostawayError::Incomplete`.
    pub(super) async fn list_by_offset(
        &self,
        path: &str,
        endpoint: &'static str,
        extra: &[(&'static str, String)],
    ) -> Result<Vec<Value>, HostawayError> {
        let first = self.walk_offsets(path, endpoint, extra, true).await?;
        self.complete_or_walk_again(path, endpoint, extra, first)
            .await
    }

    /// One offset walk: the first page, then, when it announced a `count`,
    /// the rest (concurrently when `concurrent`, up to `hostaway.concurrency`)
    /// stepping by what the first page held (servers may clamp `limit`);
    /// without a `count`, page after page until an empty one. Stops early on
    /// a page that adds nothing new and after `hostaway.max_pages` pages.
    async fn walk_offsets(
        &self,
        path: &str,
        endpoint: &'static str,
        extra: &[(&'static str, String)],
        concurrent: bool,
    ) -> Result<Collected, HostawayError> {
        let settings = &self.client.inner.settings;
        let limit = i64::from(settings.page_size.get());
        let max_pages = settings.max_pages.get();
        let page = |offset: i64| {
            Self::page_call(
                path,
                endpoint,
                extra,
                [("limit", Some(limit)), ("offset", Some(offset))],
            )
        };
        let mut collected = Collected::default();
        let first = self.execute(&page(0)).await?;
        let first_items = result_array(endpoint, first.result)?;
        let step = first_items.len() as i64;
        self.add_page(&mut collected, endpoint, first.count, first_items);
        if step == 0 || collected.reached_total() {
            return Ok(collected);
        }
        if concurrent && let Some(total) = collected.total() {
            let offsets: Vec<i64> = (1..)
                .map(|i| i * step)
                .take_while(|offset| (*offset as u64) < total)
                .take(max_pages as usize - 1)
                .collect();
            let mut pages = futures::stream::iter(offsets)
                .map(|offset| {
                    let call = page(offset);
                    async move { self.execute(&call).await }
                })
                .buffered(settings.concurrency.get());
            while let Some(envelope) = pages.try_next().await? {
                let items = result_array(endpoint, envelope.result)?;
                self.add_page(&mut collected, endpoint, envelope.count, items);
            }
            return Ok(collected);
        }
        let mut offset = step;
        for _ in 1..max_pages {
            let envelope = self.execute(&page(offset)).await?;
            let items = result_array(endpoint, envelope.result)?;
            let len = items.len() as i64;
            let new = self.add_page(&mut collected, endpoint, envelope.count, items);
            if len == 0 || new == 0 || collected.reached_total() {
                break;
            }
            offset += len;
        }
        Ok(collected)
    }

    /// Pages reservations with the `afterId` cursor exactly as API.md §4.2
    /// documents it, and proves the walk complete: one short of the
    /// announced `count` is repeated once with offset paging (deprecated,
    /// still documented), then fails.
    pub(super) async fn list_by_cursor(
        &self,
        path: &str,
        endpoint: &'static str,
        extra: &[(&'static str, String)],
    ) -> Result<Vec<Value>, HostawayError> {
        let first = self.walk_cursor(path, endpoint, extra, |_| false).await?;
        self.complete_or_walk_again(path, endpoint, extra, first)
            .await
    }

    /// One cursor walk: the first page without `afterId`, then the id of
    /// the last item of each page in the order returned, until an empty
    /// page, every announced item, a cursor that does not advance, a page
    /// for which `enough` says so, or `hostaway.max_pages` pages.
    pub(super) async fn walk_cursor(
        &self,
        path: &str,
        endpoint: &'static str,
        extra: &[(&'static str, String)],
        enough: impl Fn(&[Value]) -> bool,
    ) -> Result<Collected, HostawayError> {
        let settings = &self.client.inner.settings;
        let limit = i64::from(settings.page_size.get());
        let mut collected = Collected::default();
        let mut cursors = HashSet::new();
        let mut after_id = None;
        for _ in 0..settings.max_pages.get() {
            let call = Self::page_call(
                path,
                endpoint,
                extra,
                [("limit", Some(limit)), ("afterId", after_id)],
            );
            let envelope = self.execute(&call).await?;
            let items = result_array(endpoint, envelope.result)?;
            let next = paging::last_id(&items);
            let stop = enough(&items);
            let new = self.add_page(&mut collected, endpoint, envelope.count, items);
            if new == 0 || stop || collected.reached_total() {
                break;
            }
            match next {
                Some(id) if cursors.insert(id) => after_id = Some(id),
                _ => break,
            }
        }
        Ok(collected)
    }
}
