//! Reference implementations of the example services, used by the tests
//! and by `example-peer`, which the Python and TypeScript tests start.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use gatewire::codegen::{Fb, Sink, Source};
use gatewire::{CallContext, ErrorCode, Status};
use tokio::sync::mpsc;

use crate::{chart, chart_service, gateway, gateway_service};

/// A page with charts: charts are kept by key, so creating one twice
/// returns the first. Unknown charts are application error 0x8001.
#[derive(Default)]
pub struct Page {
    charts: Mutex<Vec<PageChart>>,
}

/// A chart's key, title and points.
type PageChart = (String, String, Vec<(f64, f64)>);

impl Page {
    fn with_chart<R>(&self, id: u32, f: impl FnOnce(&mut PageChart) -> R) -> Result<R, Status> {
        let mut charts = self.charts.lock().unwrap();
        let c = charts.get_mut(id as usize).ok_or_else(|| Status::new(ErrorCode(0x8001), format!("no chart {id}")))?;
        Ok(f(c))
    }

    fn add(&self, points: &Fb<chart::PointsT>) -> Result<u64, Status> {
        let p = points.get();
        let (xs, ys) = (p.xs().unwrap_or_default(), p.ys().unwrap_or_default());
        if xs.len() != ys.len() {
            return Err(Status::invalid_argument("xs and ys differ in length"));
        }
        self.with_chart(p.chart(), |c| {
            c.2.extend(xs.iter().zip(ys.iter()));
            c.2.len() as u64
        })
    }
}

#[gatewire::codegen::async_trait]
impl chart_service::Handler for Page {
    async fn create(&self, _ctx: CallContext, request: Fb<chart::CreateChartT>) -> Result<chart::ChartRefT, Status> {
        let r = request.get();
        let mut charts = self.charts.lock().unwrap();
        let id = match charts.iter().position(|c| c.0 == r.key()) {
            Some(i) => i,
            None => {
                charts.push((r.key().to_owned(), r.title().unwrap_or_default().to_owned(), Vec::new()));
                charts.len() - 1
            }
        };
        Ok(chart::ChartRefT { id: id as u32 })
    }

    async fn set_title(&self, _ctx: CallContext, request: Fb<chart::SetTitleT>) -> Result<chart::EmptyT, Status> {
        let r = request.get();
        self.with_chart(r.chart(), |c| c.1 = r.title().to_owned())?;
        Ok(chart::EmptyT {})
    }

    async fn get_title(&self, _ctx: CallContext, request: Fb<chart::ChartRefT>) -> Result<chart::TitleT, Status> {
        let title = self.with_chart(request.get().id(), |c| c.1.clone())?;
        Ok(chart::TitleT { title: Some(title) })
    }

    async fn add_points(&self, _ctx: CallContext, request: Fb<chart::PointsT>) -> Result<chart::AddedT, Status> {
        Ok(chart::AddedT { total: self.add(&request)? })
    }

    async fn stream_points(
        &self,
        _ctx: CallContext,
        mut items: Source<chart::PointsT>,
    ) -> Result<chart::AddedT, Status> {
        let mut total = 0;
        while let Some(batch) = items.next().await {
            total = self.add(&batch?)?;
        }
        Ok(chart::AddedT { total })
    }

    async fn snapshot(
        &self,
        _ctx: CallContext,
        request: Fb<chart::ChartRefT>,
        mut items: Sink<chart::PointsT>,
    ) -> Result<(), Status> {
        let id = request.get().id();
        let points = self.with_chart(id, |c| c.2.clone())?;
        for batch in points.chunks(3) {
            let (xs, ys) = batch.iter().copied().unzip();
            items.send(&chart::PointsT { chart: id, xs: Some(xs), ys: Some(ys) }).await?;
        }
        Ok(())
    }

    async fn probe(&self, _ctx: CallContext, request: Fb<chart::ProbeT>) -> Result<chart::ProbeReplyT, Status> {
        Ok(chart::ProbeReplyT { sent_ns: request.get().sent_ns(), page_ms: 1.5 })
    }
}

/// A gateway that reports drive commands on a channel.
pub struct Gateway {
    drives: mpsc::UnboundedSender<(gateway::Dir, f32)>,
    seq: AtomicU64,
}

impl Gateway {
    /// A gateway and the receiving end of its drive commands.
    pub fn new() -> (Self, mpsc::UnboundedReceiver<(gateway::Dir, f32)>) {
        let (drives, rx) = mpsc::unbounded_channel();
        (Self { drives, seq: AtomicU64::new(0) }, rx)
    }
}

#[gatewire::codegen::async_trait]
impl gateway_service::Handler for Gateway {
    async fn get_status(&self, _ctx: CallContext, _request: Fb<gateway::EmptyT>) -> Result<gateway::StatusT, Status> {
        Ok(gateway::StatusT { name: Some("gw-1".into()), uptime_s: 42, health: gateway::Health::Degraded, clients: 1 })
    }

    async fn get_config(&self, _ctx: CallContext, _request: Fb<gateway::EmptyT>) -> Result<gateway::ConfigT, Status> {
        Ok(gateway::ConfigT {
            settings: Some(vec![gateway::SettingT { key: "mode".into(), value: Some("auto".into()) }]),
        })
    }

    async fn set_config(&self, _ctx: CallContext, request: Fb<gateway::ConfigT>) -> Result<gateway::ConfigT, Status> {
        Ok(request.unpack())
    }

    async fn drive(&self, _ctx: CallContext, event: Fb<gateway::DirectionT>) {
        let _ = self.drives.send((event.get().dir(), event.get().speed()));
    }

    async fn chat(
        &self,
        _ctx: CallContext,
        mut items: Source<gateway::ChatMessageT>,
        mut replies: Sink<gateway::ChatMessageT>,
    ) -> Result<(), Status> {
        while let Some(m) = items.next().await {
            let m = m?;
            let text = format!("re: {}", m.get().text().unwrap_or_default());
            replies.send(&gateway::ChatMessageT { from: Some("gateway".into()), text: Some(text), sent_ms: 0 }).await?;
        }
        Ok(())
    }

    async fn telemetry(
        &self,
        _ctx: CallContext,
        request: Fb<gateway::TelemetryRequestT>,
        mut items: Sink<gateway::SampleT>,
    ) -> Result<(), Status> {
        for _ in 0..request.get().count() {
            let seq = self.seq.fetch_add(1, Ordering::Relaxed);
            let position = gateway::Vec3T { x: seq as f32, y: 0.0, z: -1.0 };
            items
                .send(&gateway::SampleT { seq, time_ms: seq * 10, temperature_c: 21.5, position: Some(position) })
                .await?;
        }
        Ok(())
    }
}
