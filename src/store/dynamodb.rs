//! The serverless backend: one DynamoDB table (built with the `dynamodb`
//! feature).
//!
//! Single-table design: partition key `pk` (S), sort key `sk` (S), and the
//! attributes `value` (B), `version` (N) and `expires_at` (N, Unix seconds,
//! also the table's TTL attribute; absent for items that never expire).
//! Counters made by [`Store::increment`] keep their count in a number
//! attribute `count` instead of `value` (DynamoDB can only add to numbers);
//! reads turn it back into the decimal bytes the other backends store.
//!
//! DynamoDB deletes expired items lazily (typically within a few days), so
//! every read filters on `expires_at` and every conditional write treats an
//! expired item as absent. `docs/storage.md` lists which operation maps to
//! which API call and condition expression.

use std::{
    collections::{HashMap, HashSet},
    hash::{BuildHasher, Hasher},
    time::Duration,
};

use async_trait::async_trait;
use aws_sdk_dynamodb::{
    Client,
    config::{BehaviorVersion, retry::RetryConfig, timeout::TimeoutConfig},
    error::{DisplayErrorContext, ProvideErrorMetadata, SdkError},
    operation::transact_write_items::TransactWriteItemsError,
    primitives::Blob,
    types::{
        AttributeDefinition, AttributeValue, BillingMode, Delete, KeySchemaElement, KeyType, Put,
        ReturnValue, ScalarAttributeType, TableStatus, TimeToLiveSpecification, TimeToLiveStatus,
        TransactWriteItem,
    },
};

use super::{Item, NewItem, Store, StoreError, Write, now_unix};

const PK: &str = "pk";
const SK: &str = "sk";
const VALUE: &str = "value";
const VERSION: &str = "version";
const EXPIRES_AT: &str = "expires_at";
const COUNT: &str = "count";
/// A random id per attempt of a write, stored with every item it puts. The
/// SDK retries an attempt that timed out or lost its connection, and if the
/// first try had committed, the retry fails its own condition; finding this
/// id on the item tells "our write already landed" from "someone else's
/// write won". (Transactions also carry the SDK's ClientRequestToken, which
/// DynamoDB honours; emulators may not.)
const WRITE_ID: &str = "wid";

/// A taken item's expiry from before it was taken (see `take_as`), or
/// [`NEVER`] for an item that had none.
const EXPIRES_BEFORE_TAKE: &str = "taken_from_expires_at";
const NEVER: i64 = -1;
/// How far in the past a taken item's expiry is set: far enough that no
/// instance with a skewed clock sees it live, near enough for TTL (which
/// skips items expired more than five years ago) to delete it.
const TAKEN_EXPIRED_AGO_SECS: i64 = 24 * 3600;

/// The trait's limit on the writes of one transaction.
const MAX_TRANSACTION_WRITES: usize = 25;
/// Attempts of our own retry loops (on top of the SDK's per-call retries):
/// lost races of `put`/`increment` and `TransactionConflict` cancellations.
const MAX_ATTEMPTS: u32 = 8;

/// Error codes after which trying again may work. The SDK already retries
/// the throttling ones a few times; whatever is left is reported as
/// [`StoreError::Unavailable`].
const TRANSIENT_CODES: &[&str] = &[
    "InternalServerError",
    "ServiceUnavailable",
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TransactionConflictException",
    "TransactionInProgressException",
    "RequestTimeout",
    "RequestTimeoutException",
];

pub struct DynamoStore {
    client: Client,
    table: String,
}

impl DynamoStore {
    /// Connects with the standard AWS environment: region, credentials and
    /// endpoint (`AWS_ENDPOINT_URL_DYNAMODB` or `AWS_ENDPOINT_URL`) from the
    /// environment variables, the shared config files or the Lambda/ECS
    /// runtime. Does not call DynamoDB.
    pub async fn connect(table: &str) -> Result<Self, StoreError> {
        let shared = aws_config::defaults(BehaviorVersion::latest()).load().await;
        if shared.region().is_none() {
            return Err(StoreError::Other(
                "no AWS region configured for DynamoDB: set AWS_REGION".into(),
            ));
        }
        Ok(Self::from_config(
            aws_sdk_dynamodb::config::Builder::from(&shared),
            table,
        ))
    }

    /// Builds the store from an explicit client configuration (tests, or an
    /// embedding application with its own AWS setup). The retry and timeout
    /// settings are replaced by this backend's.
    pub fn from_config(config: aws_sdk_dynamodb::config::Builder, table: &str) -> Self {
        let config = config
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(5)
                    .with_initial_backoff(Duration::from_millis(25))
                    .with_max_backoff(Duration::from_secs(2)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(Duration::from_secs(3))
                    .operation_attempt_timeout(Duration::from_secs(5))
                    .operation_timeout(Duration::from_secs(20))
                    .build(),
            )
            .build();
        Self {
            client: Client::from_conf(config),
            table: table.to_owned(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    /// Creates the table (on-demand capacity, TTL on `expires_at`) unless it
    /// exists, and waits until it is active. For tests and local development;
    /// deployments create the table with their infrastructure code.
    pub async fn create_table_if_missing(&self) -> Result<(), StoreError> {
        let exists = match self
            .client
            .describe_table()
            .table_name(&self.table)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if e.code() == Some("ResourceNotFoundException") => false,
            Err(e) => return Err(sdk_err(e)),
        };
        if !exists {
            let attr = |name: &str| {
                AttributeDefinition::builder()
                    .attribute_name(name)
                    .attribute_type(ScalarAttributeType::S)
                    .build()
                    .map_err(build_err)
            };
            let key = |name: &str, key_type: KeyType| {
                KeySchemaElement::builder()
                    .attribute_name(name)
                    .key_type(key_type)
                    .build()
                    .map_err(build_err)
            };
            let created = self
                .client
                .create_table()
                .table_name(&self.table)
                .attribute_definitions(attr(PK)?)
                .attribute_definitions(attr(SK)?)
                .key_schema(key(PK, KeyType::Hash)?)
                .key_schema(key(SK, KeyType::Range)?)
                .billing_mode(BillingMode::PayPerRequest)
                .send()
                .await;
            match created {
                Ok(_) => {}
                // Someone else created it meanwhile.
                Err(e) if e.code() == Some("ResourceInUseException") => {}
                Err(e) => return Err(sdk_err(e)),
            }
        }
        self.wait_active().await?;

        let ttl = self
            .client
            .describe_time_to_live()
            .table_name(&self.table)
            .send()
            .await
            .map_err(sdk_err)?;
        let status = ttl
            .time_to_live_description()
            .and_then(|d| d.time_to_live_status());
        if !matches!(
            status,
            Some(TimeToLiveStatus::Enabled | TimeToLiveStatus::Enabling)
        ) {
            let spec = TimeToLiveSpecification::builder()
                .enabled(true)
                .attribute_name(EXPIRES_AT)
                .build()
                .map_err(build_err)?;
            self.client
                .update_time_to_live()
                .table_name(&self.table)
                .time_to_live_specification(spec)
                .send()
                .await
                .map_err(sdk_err)?;
        }
        Ok(())
    }

    async fn wait_active(&self) -> Result<(), StoreError> {
        for _ in 0..120 {
            let out = self
                .client
                .describe_table()
                .table_name(&self.table)
                .send()
                .await
                .map_err(sdk_err)?;
            if out.table().and_then(|t| t.table_status()) == Some(&TableStatus::Active) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Err(StoreError::Unavailable(format!(
            "table {} did not become active",
            self.table
        )))
    }

    /// The item's attributes, raw, read consistently.
    async fn get_raw(
        &self,
        pk: &str,
        sk: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, StoreError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            .consistent_read(true)
            .send()
            .await
            .map_err(sdk_err)?;
        Ok(out.item)
    }

    /// Turns one write into a conditional request, reading first for `Put`
    /// (whose new version depends on the current item).
    async fn plan(&self, write: &Write, now: i64) -> Result<Op, StoreError> {
        Ok(match write {
            Write::Put(item) => {
                let current = match self.get_raw(&item.pk, &item.sk).await? {
                    Some(attrs) => Some(decode(&attrs)?),
                    None => None,
                };
                // The condition pins the state we read; if it moved on, the
                // whole attempt is retried.
                match current.filter(|i| i.is_live(now)) {
                    Some(live) => Op::Put {
                        attrs: encode(item, live.version + 1),
                        cond: Cond::live_version(live.version, now),
                        guard: true,
                    },
                    None => Op::Put {
                        attrs: encode(item, 1),
                        cond: Cond::not_live(now),
                        guard: true,
                    },
                }
            }
            Write::Insert(item) => Op::Put {
                attrs: encode(item, 1),
                cond: Cond::not_live(now),
                guard: false,
            },
            Write::Replace {
                item,
                expected_version,
            } => Op::Put {
                attrs: encode(item, expected_version + 1),
                cond: Cond::live_version(*expected_version, now),
                guard: false,
            },
            Write::Delete { pk, sk } => Op::Delete {
                key: key(pk, sk),
                cond: None,
            },
            Write::DeleteVersion {
                pk,
                sk,
                expected_version,
            } => Op::Delete {
                key: key(pk, sk),
                cond: Some(Cond::live_version(*expected_version, now)),
            },
        })
    }

    async fn try_transact(
        &self,
        writes: &[Write],
        write_id: &AttributeValue,
    ) -> Result<(), Attempt> {
        let now = now_unix();
        let mut ops = Vec::with_capacity(writes.len());
        for write in writes {
            let mut op = self.plan(write, now).await.map_err(Attempt::from)?;
            if let Op::Put { attrs, .. } = &mut op {
                attrs.insert(WRITE_ID.to_owned(), write_id.clone());
            }
            ops.push(op);
        }
        match self.apply(&ops).await {
            Err(Attempt::Fail(StoreError::Conflict)) if self.landed(&ops, write_id).await => Ok(()),
            other => other,
        }
    }

    /// Whether this attempt's write is in the table after all: the first
    /// item it puts carries its write id (a transaction lands whole or not
    /// at all). Deletes leave nothing to check.
    async fn landed(&self, ops: &[Op], write_id: &AttributeValue) -> bool {
        let Some(key) = ops.iter().find_map(|op| match op {
            Op::Put { attrs, .. } => Some(HashMap::from([
                (PK.to_owned(), attrs[PK].clone()),
                (SK.to_owned(), attrs[SK].clone()),
            ])),
            Op::Delete { .. } => None,
        }) else {
            return false;
        };
        let found = self
            .client
            .get_item()
            .table_name(&self.table)
            .set_key(Some(key))
            .consistent_read(true)
            .projection_expression("#w")
            .expression_attribute_names("#w", WRITE_ID)
            .send()
            .await;
        matches!(found, Ok(out) if out.item().and_then(|item| item.get(WRITE_ID)) == Some(write_id))
    }

    /// `transact`, as the write `write_id`, kept for every attempt: an
    /// attempt that timed out may still land, and the next one must then
    /// recognise it as its own (a new id would see only a conflict). Public
    /// only so that tests can replay a write.
    #[doc(hidden)]
    pub async fn transact_as(&self, writes: Vec<Write>, write_id: &str) -> Result<(), StoreError> {
        let write_id = AttributeValue::S(write_id.to_owned());
        if writes.len() > MAX_TRANSACTION_WRITES {
            return Err(StoreError::Other(format!(
                "a transaction takes at most {MAX_TRANSACTION_WRITES} writes"
            )));
        }
        let mut keys = HashSet::new();
        for write in &writes {
            let (pk, sk) = write_key(write);
            if !keys.insert((pk, sk)) {
                return Err(StoreError::Other(format!(
                    "a transaction writes {pk}/{sk} twice; keys must be distinct"
                )));
            }
        }
        if writes.is_empty() {
            return Ok(());
        }
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            match self.try_transact(&writes, &write_id).await {
                Ok(()) => return Ok(()),
                Err(Attempt::Fail(e)) => return Err(e),
                Err(Attempt::Retry(why)) => last = why,
            }
        }
        Err(StoreError::Unavailable(format!(
            "dynamodb write gave up after {MAX_ATTEMPTS} attempts: {last}"
        )))
    }

    /// `take`, as the attempt `write_id`. The item is not deleted but marked
    /// taken: expired a day ago (so absent for every operation, and removed
    /// by TTL later), with the attempt's id, and its own expiry kept aside.
    /// The SDK retries an attempt whose answer was lost; if the first try
    /// had landed, the retry fails its condition, finds its own id on the
    /// item, and still returns what it took, so no sign-in is lost to a
    /// retry. Public only so that tests can replay an attempt.
    #[doc(hidden)]
    pub async fn take_as(
        &self,
        pk: &str,
        sk: &str,
        write_id: &str,
    ) -> Result<Option<Item>, StoreError> {
        let now = now_unix();
        let cond = Cond::live(now);
        let mut names = cond.names;
        names.insert("#w".into(), WRITE_ID.into());
        names.insert("#was".into(), EXPIRES_BEFORE_TAKE.into());
        let mut values = cond.values;
        values.insert(":w".into(), AttributeValue::S(write_id.to_owned()));
        values.insert(":taken".into(), num(now - TAKEN_EXPIRED_AGO_SECS));
        values.insert(":never".into(), num(NEVER));
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .set_key(Some(key(pk, sk)))
            // `#was` first: it must read the expiry from before this update.
            .update_expression("SET #was = if_not_exists(#exp, :never), #exp = :taken, #w = :w")
            .condition_expression(cond.expr)
            .set_expression_attribute_names(Some(names))
            .set_expression_attribute_values(Some(values))
            .return_values(ReturnValue::AllOld)
            .send()
            .await;
        match result {
            // Only the attempt whose update marked the item gets it back.
            Ok(out) => match out.attributes {
                Some(attrs) if !attrs.is_empty() => Ok(Some(decode(&attrs)?)),
                _ => Ok(None),
            },
            Err(e) => match sdk_err(e) {
                StoreError::Conflict => self.taken_by(pk, sk, write_id).await,
                other => Err(other),
            },
        }
    }

    /// The item as it was before `write_id` took it, if that attempt did.
    async fn taken_by(
        &self,
        pk: &str,
        sk: &str,
        write_id: &str,
    ) -> Result<Option<Item>, StoreError> {
        let Some(mut attrs) = self.get_raw(pk, sk).await? else {
            return Ok(None);
        };
        if attrs
            .get(WRITE_ID)
            .and_then(|w| w.as_s().ok())
            .map(String::as_str)
            != Some(write_id)
        {
            return Ok(None);
        }
        match attrs.remove(EXPIRES_BEFORE_TAKE) {
            Some(was) if parse_n::<i64>(&was, EXPIRES_BEFORE_TAKE)? != NEVER => {
                attrs.insert(EXPIRES_AT.to_owned(), was);
            }
            _ => {
                attrs.remove(EXPIRES_AT);
            }
        }
        decode(&attrs).map(Some)
    }

    async fn apply(&self, ops: &[Op]) -> Result<(), Attempt> {
        if let [op] = ops {
            return self.apply_single(op).await;
        }

        let mut items = Vec::with_capacity(ops.len());
        for op in ops {
            items.push(op.transact_item(&self.table).map_err(Attempt::Fail)?);
        }
        let result = self
            .client
            .transact_write_items()
            .set_transact_items(Some(items))
            .send()
            .await;
        let err = match result {
            Ok(_) => return Ok(()),
            Err(e) => e,
        };
        if err.code() != Some("TransactionCanceledException") {
            return Err(Attempt::from(sdk_err(err)));
        }
        let message = DisplayErrorContext(&err).to_string();
        let reasons: Vec<Option<String>> = match err.into_service_error() {
            TransactWriteItemsError::TransactionCanceledException(e) => e
                .cancellation_reasons()
                .iter()
                .map(|r| r.code().map(str::to_owned))
                .collect(),
            _ => Vec::new(),
        };
        Err(classify_cancellation(ops, &reasons, &message))
    }

    async fn apply_single(&self, op: &Op) -> Result<(), Attempt> {
        let result = match op {
            Op::Put { attrs, cond, .. } => self
                .client
                .put_item()
                .table_name(&self.table)
                .set_item(Some(attrs.clone()))
                .condition_expression(cond.expr)
                .set_expression_attribute_names(Some(cond.names.clone()))
                .set_expression_attribute_values(Some(cond.values.clone()))
                .send()
                .await
                .map(|_| ())
                .map_err(sdk_err),
            Op::Delete { key, cond } => {
                let mut req = self
                    .client
                    .delete_item()
                    .table_name(&self.table)
                    .set_key(Some(key.clone()));
                if let Some(cond) = cond {
                    req = req
                        .condition_expression(cond.expr)
                        .set_expression_attribute_names(Some(cond.names.clone()))
                        .set_expression_attribute_values(Some(cond.values.clone()));
                }
                req.send().await.map(|_| ()).map_err(sdk_err)
            }
        };
        match result {
            Err(StoreError::Conflict) if op.is_guard() => {
                Err(Attempt::Retry("the item changed while writing".into()))
            }
            other => other.map_err(Attempt::from),
        }
    }
}

/// A condition expression with exactly the names and values it uses
/// (DynamoDB rejects unused ones).
#[derive(Clone)]
struct Cond {
    expr: &'static str,
    names: HashMap<String, String>,
    values: HashMap<String, AttributeValue>,
}

impl Cond {
    /// A live item exists.
    fn live(now: i64) -> Self {
        Self {
            expr: "attribute_exists(#pk) AND (attribute_not_exists(#exp) OR #exp > :now)",
            names: names(&[("#pk", PK), ("#exp", EXPIRES_AT)]),
            values: HashMap::from([(":now".to_owned(), num(now))]),
        }
    }

    /// No item, or only an expired one.
    fn not_live(now: i64) -> Self {
        Self {
            expr: "attribute_not_exists(#pk) OR #exp <= :now",
            names: names(&[("#pk", PK), ("#exp", EXPIRES_AT)]),
            values: HashMap::from([(":now".to_owned(), num(now))]),
        }
    }

    /// A live item with this version exists.
    fn live_version(version: u64, now: i64) -> Self {
        Self {
            expr: "#ver = :ver AND (attribute_not_exists(#exp) OR #exp > :now)",
            names: names(&[("#ver", VERSION), ("#exp", EXPIRES_AT)]),
            values: HashMap::from([
                (":ver".to_owned(), num(version)),
                (":now".to_owned(), num(now)),
            ]),
        }
    }
}

/// One planned write.
enum Op {
    Put {
        attrs: HashMap<String, AttributeValue>,
        cond: Cond,
        /// The condition is ours (pinning what `plan` read), not the
        /// caller's: its failure means "retry", not "conflict".
        guard: bool,
    },
    Delete {
        key: HashMap<String, AttributeValue>,
        cond: Option<Cond>,
    },
}

impl Op {
    fn is_guard(&self) -> bool {
        matches!(self, Op::Put { guard: true, .. })
    }

    fn transact_item(&self, table: &str) -> Result<TransactWriteItem, StoreError> {
        Ok(match self {
            Op::Put { attrs, cond, .. } => TransactWriteItem::builder()
                .put(
                    Put::builder()
                        .table_name(table)
                        .set_item(Some(attrs.clone()))
                        .condition_expression(cond.expr)
                        .set_expression_attribute_names(Some(cond.names.clone()))
                        .set_expression_attribute_values(Some(cond.values.clone()))
                        .build()
                        .map_err(build_err)?,
                )
                .build(),
            Op::Delete { key, cond } => {
                let mut delete = Delete::builder()
                    .table_name(table)
                    .set_key(Some(key.clone()));
                if let Some(cond) = cond {
                    delete = delete
                        .condition_expression(cond.expr)
                        .set_expression_attribute_names(Some(cond.names.clone()))
                        .set_expression_attribute_values(Some(cond.values.clone()));
                }
                TransactWriteItem::builder()
                    .delete(delete.build().map_err(build_err)?)
                    .build()
            }
        })
    }
}

/// The outcome of one failed attempt of a write.
enum Attempt {
    /// Lost a race that a fresh attempt may win.
    Retry(String),
    Fail(StoreError),
}

impl From<StoreError> for Attempt {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(why) => Attempt::Retry(why),
            other => Attempt::Fail(other),
        }
    }
}

/// Reads a `TransactionCanceledException`: a failed condition of the
/// caller's is a conflict; a failed guard or a conflicting concurrent
/// transaction is worth another attempt.
fn classify_cancellation(ops: &[Op], reasons: &[Option<String>], message: &str) -> Attempt {
    if reasons.is_empty() {
        // No per-item reasons: fall back on the message.
        return if message.contains("ConditionalCheckFailed") {
            Attempt::Fail(StoreError::Conflict)
        } else {
            Attempt::Fail(StoreError::Other(format!("dynamodb: {message}")))
        };
    }
    let mut retry = None;
    for (op, code) in ops.iter().zip(reasons) {
        match code.as_deref() {
            None | Some("None") => {}
            Some("ConditionalCheckFailed") if op.is_guard() => {
                retry = Some("an item changed while writing".to_owned())
            }
            Some("ConditionalCheckFailed") => return Attempt::Fail(StoreError::Conflict),
            Some(
                code @ ("TransactionConflict"
                | "ThrottlingError"
                | "ProvisionedThroughputExceeded"
                | "RequestLimitExceeded"),
            ) => retry = Some(code.to_owned()),
            Some(code) => {
                return Attempt::Fail(StoreError::Other(format!(
                    "dynamodb transaction cancelled ({code}): {message}"
                )));
            }
        }
    }
    Attempt::Retry(retry.unwrap_or_else(|| message.to_owned()))
}

#[async_trait]
impl Store for DynamoStore {
    async fn get(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        let now = now_unix();
        match self.get_raw(pk, sk).await? {
            Some(attrs) => Ok(Some(decode(&attrs)?).filter(|i| i.is_live(now))),
            None => Ok(None),
        }
    }

    async fn list(&self, pk: &str) -> Result<Vec<Item>, StoreError> {
        let now = now_unix();
        let mut items = Vec::new();
        let mut start: Option<HashMap<String, AttributeValue>> = None;
        loop {
            let out = self
                .client
                .query()
                .table_name(&self.table)
                .consistent_read(true)
                .key_condition_expression("#pk = :pk")
                .filter_expression("attribute_not_exists(#exp) OR #exp > :now")
                .set_expression_attribute_names(Some(names(&[("#pk", PK), ("#exp", EXPIRES_AT)])))
                .expression_attribute_values(":pk", AttributeValue::S(pk.to_owned()))
                .expression_attribute_values(":now", num(now))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(sdk_err)?;
            for attrs in out.items() {
                let item = decode(attrs)?;
                if item.is_live(now) {
                    items.push(item);
                }
            }
            match out.last_evaluated_key {
                Some(key) if !key.is_empty() => start = Some(key),
                _ => break,
            }
        }
        // Query already returns ascending sort keys (UTF-8 byte order); the
        // sort keeps the order explicit and costs nothing on sorted input.
        items.sort_by(|a, b| a.sk.cmp(&b.sk));
        Ok(items)
    }

    async fn take(&self, pk: &str, sk: &str) -> Result<Option<Item>, StoreError> {
        self.take_as(pk, sk, &crate::crypto::random_id()).await
    }

    async fn transact(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        self.transact_as(writes, &crate::crypto::random_id()).await
    }

    async fn increment(&self, pk: &str, sk: &str, expires_at: i64) -> Result<u64, StoreError> {
        let mut last = String::new();
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 0 {
                backoff(attempt).await;
            }
            let now = now_unix();
            // 1. Add one to a live counter, keeping its expiry.
            let live = Cond::live(now);
            let mut attr_names = live.names.clone();
            attr_names.extend(names(&[("#n", COUNT), ("#ver", VERSION), ("#v", VALUE)]));
            let mut values = live.values.clone();
            values.insert(":one".into(), num(1));
            let added = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(pk, sk)))
                .update_expression("ADD #n :one, #ver :one REMOVE #v")
                .condition_expression(live.expr)
                .set_expression_attribute_names(Some(attr_names))
                .set_expression_attribute_values(Some(values))
                .return_values(ReturnValue::UpdatedNew)
                .send()
                .await;
            match added {
                Ok(out) => {
                    let count = out
                        .attributes
                        .as_ref()
                        .and_then(|a| a.get(COUNT))
                        .ok_or_else(|| StoreError::Corrupt(format!("counter {pk}/{sk}: no count")))
                        .and_then(|v| parse_n::<u64>(v, COUNT))?;
                    return Ok(count);
                }
                Err(e) => match sdk_err(e) {
                    StoreError::Conflict => {}
                    StoreError::Unavailable(why) => {
                        last = why;
                        continue;
                    }
                    other => return Err(other),
                },
            }
            // 2. No live counter: start a new window at 1.
            let absent = Cond::not_live(now);
            let mut attr_names = absent.names.clone();
            attr_names.extend(names(&[("#n", COUNT), ("#ver", VERSION), ("#v", VALUE)]));
            let mut values = absent.values.clone();
            values.insert(":one".into(), num(1));
            values.insert(":exp".into(), num(expires_at));
            let started = self
                .client
                .update_item()
                .table_name(&self.table)
                .set_key(Some(key(pk, sk)))
                .update_expression("SET #n = :one, #ver = :one, #exp = :exp REMOVE #v")
                .condition_expression(absent.expr)
                .set_expression_attribute_names(Some(attr_names))
                .set_expression_attribute_values(Some(values))
                .send()
                .await;
            match started {
                Ok(_) => return Ok(1),
                Err(e) => match sdk_err(e) {
                    // Another caller started the window meanwhile: add to it.
                    StoreError::Conflict => last = "lost the race to start the window".into(),
                    StoreError::Unavailable(why) => last = why,
                    other => return Err(other),
                },
            }
        }
        Err(StoreError::Unavailable(format!(
            "dynamodb increment gave up after {MAX_ATTEMPTS} attempts: {last}"
        )))
    }
}

fn write_key(write: &Write) -> (&str, &str) {
    match write {
        Write::Put(i) | Write::Insert(i) | Write::Replace { item: i, .. } => (&i.pk, &i.sk),
        Write::Delete { pk, sk } | Write::DeleteVersion { pk, sk, .. } => (pk, sk),
    }
}

fn names(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn num(n: impl ToString) -> AttributeValue {
    AttributeValue::N(n.to_string())
}

fn key(pk: &str, sk: &str) -> HashMap<String, AttributeValue> {
    HashMap::from([
        (PK.to_owned(), AttributeValue::S(pk.to_owned())),
        (SK.to_owned(), AttributeValue::S(sk.to_owned())),
    ])
}

fn encode(item: &NewItem, version: u64) -> HashMap<String, AttributeValue> {
    let mut attrs = key(&item.pk, &item.sk);
    attrs.insert(
        VALUE.to_owned(),
        AttributeValue::B(Blob::new(item.value.clone())),
    );
    attrs.insert(VERSION.to_owned(), num(version));
    if let Some(t) = item.expires_at {
        attrs.insert(EXPIRES_AT.to_owned(), num(t));
    }
    attrs
}

fn parse_n<T: std::str::FromStr>(v: &AttributeValue, name: &str) -> Result<T, StoreError> {
    v.as_n()
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| StoreError::Corrupt(format!("attribute {name} is not a valid number")))
}

fn decode(attrs: &HashMap<String, AttributeValue>) -> Result<Item, StoreError> {
    let s = |name: &str| {
        attrs
            .get(name)
            .and_then(|v| v.as_s().ok())
            .cloned()
            .ok_or_else(|| StoreError::Corrupt(format!("item without a string {name}")))
    };
    let pk = s(PK)?;
    let sk = s(SK)?;
    let corrupt = |what: &str| StoreError::Corrupt(format!("item {pk}/{sk}: {what}"));
    let value = match (attrs.get(VALUE), attrs.get(COUNT)) {
        (Some(AttributeValue::B(b)), _) => b.as_ref().to_vec(),
        (_, Some(n)) => parse_n::<u64>(n, COUNT)?.to_string().into_bytes(),
        _ => return Err(corrupt("no binary value")),
    };
    let version = parse_n::<u64>(
        attrs.get(VERSION).ok_or_else(|| corrupt("no version"))?,
        VERSION,
    )?;
    let expires_at = attrs
        .get(EXPIRES_AT)
        .map(|v| parse_n::<i64>(v, EXPIRES_AT))
        .transpose()?;
    Ok(Item {
        pk,
        sk,
        value,
        version,
        expires_at,
    })
}

fn build_err(e: aws_sdk_dynamodb::error::BuildError) -> StoreError {
    StoreError::Other(format!("dynamodb request: {e}"))
}

/// Maps an SDK error: a failed condition is a conflict, throttling and
/// transport trouble (left after the SDK's own retries) is `Unavailable`.
fn sdk_err<E>(err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let code = err.code().map(str::to_owned);
    let server_error = err
        .raw_response()
        .is_some_and(|r| r.status().is_server_error());
    let transport = matches!(
        err,
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) | SdkError::ResponseError(_)
    );
    let message = DisplayErrorContext(&err).to_string();
    match code.as_deref() {
        Some("ConditionalCheckFailedException") => StoreError::Conflict,
        Some(c) if TRANSIENT_CODES.contains(&c) => {
            StoreError::Unavailable(format!("dynamodb: {message}"))
        }
        _ if transport || server_error => StoreError::Unavailable(format!("dynamodb: {message}")),
        _ => StoreError::Other(format!("dynamodb: {message}")),
    }
}

/// Exponential backoff with full jitter: up to 20 ms, 40 ms, ... 1.28 s.
async fn backoff(attempt: u32) {
    let cap_ms = 10u64 << attempt.clamp(1, 7);
    let jitter = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    tokio::time::sleep(Duration::from_millis(jitter % (cap_ms + 1))).await;
}
