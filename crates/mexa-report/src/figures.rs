//! Figures drawn with plotters, each to PNG (bitmap backend) and SVG from the same code.
use anyhow::{anyhow, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::sync::Once;

static FONT: Once = Once::new();
const FONT_BYTES: &[u8] = include_bytes!("../fonts/DejaVuSans.ttf");

fn register_font() {
    FONT.call_once(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font("sans-serif", style, FONT_BYTES)
                .map_err(|_| ())
                .expect("bundled font loads");
        }
    });
}

/// A figure: a drawing function, its size, and a file stem.
pub struct Figure<'a> {
    pub stem: String,
    pub size: (u32, u32),
    pub draw: Box<dyn Fn(&DrawingArea<SVGBackend, Shift>) -> Result<()> + 'a>,
    pub draw_png: Box<dyn Fn(&DrawingArea<BitMapBackend, Shift>) -> Result<()> + 'a>,
}

/// Renders a figure to (png bytes, svg text).
pub fn render(f: &Figure) -> Result<(Vec<u8>, String)> {
    register_font();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, f.size).into_drawing_area();
        (f.draw)(&root)?;
        root.present().map_err(|e| anyhow!("{e:?}"))?;
    }
    let mut rgb = vec![0u8; (f.size.0 * f.size.1 * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, f.size).into_drawing_area();
        (f.draw_png)(&root)?;
        root.present().map_err(|e| anyhow!("{e:?}"))?;
    }
    Ok((encode_png(&rgb, f.size)?, svg))
}

/// 8-bit RGB → PNG (deterministic for equal pixels).
fn encode_png(rgb: &[u8], (w, h): (u32, u32)) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    {
        let mut enc = png::Encoder::new(&mut out, w, h);
        enc.set_color(png::ColorType::Rgb);
        enc.set_depth(png::BitDepth::Eight);
        enc.set_compression(png::Compression::Default);
        let mut writer = enc.write_header()?;
        writer.write_image_data(rgb)?;
    }
    Ok(out)
}

/// Viridis-like colour for v in [0, 1].
pub fn colour(v: f64) -> RGBColor {
    const STOPS: [(f64, (u8, u8, u8)); 5] = [
        (0.0, (68, 1, 84)),
        (0.25, (59, 82, 139)),
        (0.5, (33, 145, 140)),
        (0.75, (94, 201, 98)),
        (1.0, (253, 231, 37)),
    ];
    let v = if v.is_finite() { v.clamp(0.0, 1.0) } else { 0.0 };
    for w in STOPS.windows(2) {
        let ((a, ca), (b, cb)) = (w[0], w[1]);
        if v <= b {
            let t = (v - a) / (b - a);
            let mix = |x: u8, y: u8| (x as f64 + (y as f64 - x as f64) * t).round() as u8;
            return RGBColor(mix(ca.0, cb.0), mix(ca.1, cb.1), mix(ca.2, cb.2));
        }
    }
    RGBColor(253, 231, 37)
}

fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing failed: {e:?}")
}

/// The colour of a score not distinguishable from chance.
pub const GREY: RGBColor = RGBColor(205, 205, 205);

/// Heatmap: rows = languages, columns = hidden states, colour = score in [0, 1]; cells
/// `grey` marks (same shape, or empty for none) are drawn grey: near chance.
pub fn heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    languages: &[String],
    grid: &[Vec<f64>],
    grey: &[Vec<bool>],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let layers = grid.first().map(Vec::len).unwrap_or(0);
    let (main, legend) = root.split_horizontally(root.dim_in_pixel().0 - 90);
    let mut chart = ChartBuilder::on(&main)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(90)
        .build_cartesian_2d(segments(layers), segments(languages.len()))
        .map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("hidden state (0 = embeddings)")
        .x_labels(layers.min(20))
        .y_labels(languages.len())
        .x_label_formatter(&|x| centre(x).map(|c| c.to_string()).unwrap_or_default())
        .y_label_formatter(&|y| centre(y).and_then(|r| languages.get(r as usize).cloned()).unwrap_or_default())
        .label_style(("sans-serif", 12))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(grid.iter().enumerate().flat_map(|(r, row)| {
            row.iter().enumerate().map(move |(c, &v)| Rectangle::new(cell(c, r), fill(v, grey, r, c).filled()))
        }))
        .map_err(err)?;
    colour_bar(&legend, grey.iter().flatten().any(|&g| g))
}

/// The category a segmented axis's label stands for (labels sit at segment centres).
fn centre(v: &SegmentValue<i32>) -> Option<i32> {
    match v {
        SegmentValue::CenterOf(c) => Some(*c),
        _ => None,
    }
}

/// A heatmap cell's colour: grey where `grey` marks it (near chance), else its score's.
fn fill(v: f64, grey: &[Vec<bool>], r: usize, c: usize) -> RGBColor {
    if grey.get(r).and_then(|g| g.get(c)).copied().unwrap_or(false) {
        GREY
    } else {
        colour(v)
    }
}

/// An axis of `n` categories, labelled at their centres (a segmented `a..b` has b − a + 1).
fn segments(n: usize) -> plotters::coord::ranged1d::SegmentedCoord<plotters::coord::types::RangedCoordi32> {
    (0..(n as i32 - 1).max(0)).into_segmented()
}

/// The rectangle of cell (column, row) on segmented axes.
fn cell(c: usize, r: usize) -> [(SegmentValue<i32>, SegmentValue<i32>); 2] {
    let (c, r) = (c as i32, r as i32);
    [(SegmentValue::Exact(c), SegmentValue::Exact(r)), (SegmentValue::Exact(c + 1), SegmentValue::Exact(r + 1))]
}

/// The colour scale at the right of a heatmap, with a grey swatch for "near chance" when
/// any cell is grey.
fn colour_bar<DB: DrawingBackend>(legend: &DrawingArea<DB, Shift>, with_grey: bool) -> Result<()> {
    let (_, h) = legend.dim_in_pixel();
    let top = 40i32;
    let bottom = h as i32 - 50;
    for i in 0..100 {
        let y0 = bottom - (bottom - top) * i / 100;
        let y1 = bottom - (bottom - top) * (i + 1) / 100;
        legend.draw(&Rectangle::new([(15, y1), (35, y0)], colour(i as f64 / 100.0).filled())).map_err(err)?;
    }
    for (v, y) in [(0.0, bottom), (0.5, (top + bottom) / 2), (1.0, top)] {
        legend.draw(&Text::new(format!("{v:.1}"), (40, y - 6), ("sans-serif", 12))).map_err(err)?;
    }
    if with_grey {
        legend.draw(&Rectangle::new([(15, bottom + 14), (35, bottom + 28)], GREY.filled())).map_err(err)?;
        legend.draw(&Text::new("chance", (40, bottom + 15), ("sans-serif", 11))).map_err(err)?;
    }
    Ok(())
}

/// A square language × language heatmap (rows: pivot, columns: language) in the leaves'
/// order, under the dendrogram of their clustering. `merges` are SciPy-style `(a, b,
/// height)` over leaves `0..n` (merge `k` makes cluster `n + k`); `order` is the leaf order
/// (the matrix and labels are already in it); cells `grey` marks are near chance.
pub fn cluster_heatmap<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    labels: &[String],
    grid: &[Vec<f64>],
    grey: &[Vec<bool>],
    order: &[usize],
    merges: &[(usize, usize, f64)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let n = labels.len();
    let (w, h) = root.dim_in_pixel();
    let (main, legend) = root.split_horizontally(w - 90);
    let (top, bottom) = main.split_vertically(((h as f64) * 0.22) as u32);
    // Leaf x positions (cell centres) and each cluster's (x, height).
    let mut pos: Vec<(f64, f64)> = vec![(0.0, 0.0); n + merges.len()];
    for (slot, &leaf) in order.iter().enumerate() {
        pos[leaf] = (slot as f64 + 0.5, 0.0);
    }
    let max_h = merges.iter().map(|m| m.2).fold(0.0, f64::max).max(1e-9);
    let mut tree = ChartBuilder::on(&top)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .margin_bottom(0)
        .y_label_area_size(90)
        .build_cartesian_2d(0f64..n as f64, 0f64..max_h * 1.05)
        .map_err(err)?;
    tree.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(3)
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(err)?;
    let line = RGBColor(70, 70, 70);
    for (k, &(a, b, hgt)) in merges.iter().enumerate() {
        let (pa, pb) = (pos[a], pos[b]);
        tree.draw_series(LineSeries::new([(pa.0, pa.1), (pa.0, hgt), (pb.0, hgt), (pb.0, pb.1)], line)).map_err(err)?;
        pos[n + k] = ((pa.0 + pb.0) / 2.0, hgt);
    }
    let mut chart = ChartBuilder::on(&bottom)
        .margin(10)
        .margin_top(0)
        .x_label_area_size(70)
        .y_label_area_size(90)
        .build_cartesian_2d(segments(n), segments(n))
        .map_err(err)?;
    let (l1, l2) = (labels.to_vec(), labels.to_vec());
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("language")
        .y_desc("pivot")
        .x_labels(n.min(60))
        .y_labels(n.min(60))
        .x_label_formatter(&move |x| centre(x).and_then(|c| l1.get(c as usize).cloned()).unwrap_or_default())
        // Row r (a pivot) is drawn from the top, so the diagonal runs top-left to bottom-right.
        .y_label_formatter(&move |y| {
            centre(y)
                .filter(|&y| y >= 0 && (y as usize) < n)
                .map(|y| l2[n - 1 - y as usize].clone())
                .unwrap_or_default()
        })
        .x_label_style(("sans-serif", 10).into_font().transform(FontTransform::Rotate90))
        .label_style(("sans-serif", 10))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(grid.iter().enumerate().flat_map(|(r, row)| {
            // A language against itself stays blank.
            row.iter().enumerate().map(move |(c, &v)| {
                let f = if r == c { RGBColor(255, 255, 255) } else { fill(v, grey, r, c) };
                Rectangle::new(cell(c, n - 1 - r), f.filled())
            })
        }))
        .map_err(err)?;
    colour_bar(&legend, grey.iter().flatten().any(|&g| g))
}

/// What a scatter draws besides its points.
#[derive(Clone, Default)]
pub struct ScatterMarks {
    /// The least-squares line (slope, intercept).
    pub line: Option<(f64, f64)>,
    /// Chance on each axis (μ's 1/(2n − 1), the task's chance accuracy): dashed lines.
    pub x_chance: Option<f64>,
    pub y_chance: Option<f64>,
    /// The task score of always giving the commonest answer: a dotted line.
    pub y_majority: Option<f64>,
    /// Per point, its x interval (μMax's best-layer bootstrap interval): a horizontal bar.
    pub x_err: Vec<Option<(f64, f64)>>,
    /// The pivot's own point (label, μ = 1, its score), hollow: it is not part of the fit.
    pub pivot: Option<(String, f64, f64)>,
}

fn span(v: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) =
        v.filter(|x| x.is_finite()).fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| (a.min(x), b.max(x)));
    let d = (hi - lo).abs().max(1e-6) * 0.08;
    if lo.is_finite() {
        (lo - d, hi + d)
    } else {
        (0.0, 1.0)
    }
}

/// Scatter with a fitted line, chance levels, interval bars, the pivot's point and labels
/// placed so that they do not overlap (a label with no free place is left out).
pub fn scatter<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    (x_desc, y_desc): (&str, &str),
    pts: &[(String, f64, f64)],
    marks: &ScatterMarks,
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let err_ends = marks.x_err.iter().flatten().flat_map(|&(a, b)| [a, b]);
    let (x0, x1) =
        span(pts.iter().map(|p| p.1).chain(err_ends).chain(marks.x_chance).chain(marks.pivot.iter().map(|p| p.1)));
    let (y0, y1) = span(
        pts.iter().map(|p| p.2).chain(marks.y_chance).chain(marks.y_majority).chain(marks.pivot.iter().map(|p| p.2)),
    );
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(x0..x1, y0..y1)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc(x_desc)
        .y_desc(y_desc)
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    let grey = ShapeStyle { color: RGBColor(120, 120, 120).to_rgba(), filled: false, stroke_width: 1 };
    if let Some(x) = marks.x_chance {
        chart.draw_series(DashedLineSeries::new([(x, y0), (x, y1)], 6, 4, grey)).map_err(err)?;
    }
    if let Some(y) = marks.y_chance {
        chart.draw_series(DashedLineSeries::new([(x0, y), (x1, y)], 6, 4, grey)).map_err(err)?;
    }
    if let Some(y) = marks.y_majority {
        let amber = ShapeStyle { color: RGBColor(200, 120, 0).to_rgba(), filled: false, stroke_width: 2 };
        chart.draw_series(DashedLineSeries::new([(x0, y), (x1, y)], 2, 4, amber)).map_err(err)?;
    }
    if let Some((slope, intercept)) = marks.line {
        chart
            .draw_series(LineSeries::new(
                [(x0, slope * x0 + intercept), (x1, slope * x1 + intercept)],
                RGBColor(200, 60, 60).stroke_width(2),
            ))
            .map_err(err)?;
    }
    let blue = RGBColor(33, 102, 172);
    for (p, e) in pts.iter().zip(marks.x_err.iter().chain(std::iter::repeat(&None))) {
        if let Some((lo, hi)) = e.filter(|(a, b)| a.is_finite() && b.is_finite()) {
            chart.draw_series(LineSeries::new([(lo, p.2), (hi, p.2)], blue.mix(0.5).stroke_width(1))).map_err(err)?;
        }
    }
    chart.draw_series(pts.iter().map(|p| Circle::new((p.1, p.2), 4, blue.filled()))).map_err(err)?;
    let mut labelled: Vec<(String, f64, f64)> = pts.to_vec();
    if let Some(pv) = &marks.pivot {
        chart.draw_series([Circle::new((pv.1, pv.2), 5, blue.stroke_width(2))]).map_err(err)?;
        labelled.push((format!("{} (pivot)", pv.0), pv.1, pv.2));
    }
    // Greedy placement: right, left, above, below the point, the first spot that overlaps
    // neither another label nor a point.
    let at: Vec<(i32, i32)> = labelled.iter().map(|p| chart.backend_coord(&(p.1, p.2))).collect();
    let mut taken: Vec<(i32, i32, i32, i32)> = at.iter().map(|&(x, y)| (x - 4, y - 4, x + 4, y + 4)).collect();
    let font = ("sans-serif", 11).into_font().color(&RGBColor(60, 60, 60));
    let (w_max, h_max) = root.dim_in_pixel();
    for (p, &(x, y)) in labelled.iter().zip(&at) {
        let (w, h) = (p.0.chars().count() as i32 * 6 + 2, 12);
        let spots = [(x + 6, y - h / 2), (x - 6 - w, y - h / 2), (x - w / 2, y - 6 - h), (x - w / 2, y + 6)];
        let free = spots.iter().copied().find(|&(a, b)| {
            let r = (a, b, a + w, b + h);
            r.0 >= 0
                && r.1 >= 0
                && r.2 <= w_max as i32
                && r.3 <= h_max as i32
                && taken.iter().all(|t| r.2 <= t.0 || r.0 >= t.2 || r.3 <= t.1 || r.1 >= t.3)
        });
        if let Some((a, b)) = free {
            taken.push((a, b, a + w, b + h));
            root.draw(&Text::new(p.0.clone(), (a, b), font.clone())).map_err(err)?;
        }
    }
    Ok(())
}

/// Per-layer μ of several models side by side on a relative-depth axis (hidden state ÷ the
/// last one, so models of different depths line up): one panel per model, one line per
/// language in the same colour in every panel (with a legend when there are at most 12),
/// and the mean over languages in black.
pub fn depth_panels<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    panels: &[(String, Vec<(String, Vec<f64>)>)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let root = root.titled(title, ("sans-serif", 18)).map_err(err)?;
    let mut languages: Vec<&String> = panels.iter().flat_map(|p| p.1.iter().map(|l| &l.0)).collect();
    languages.sort();
    languages.dedup();
    let legend = languages.len() <= 12;
    let cols = panels.len().clamp(1, 3);
    let rows = panels.len().div_ceil(cols).max(1);
    let areas = root.split_evenly((rows, cols));
    for (k, ((name, lines), area)) in panels.iter().zip(areas.iter()).enumerate() {
        let mut chart = ChartBuilder::on(area)
            .caption(name, ("sans-serif", 14))
            .margin(8)
            .x_label_area_size(34)
            .y_label_area_size(40)
            .build_cartesian_2d(0f64..1f64, 0f64..1f64)
            .map_err(err)?;
        chart
            .configure_mesh()
            .x_desc("relative depth")
            .y_desc(if k % cols == 0 { "MEXA μ" } else { "" })
            .x_labels(5)
            .label_style(("sans-serif", 11))
            .light_line_style(RGBColor(235, 235, 235))
            .draw()
            .map_err(err)?;
        let depth = |ys: &[f64]| -> Vec<(f64, f64)> {
            let last = ys.len().saturating_sub(1).max(1) as f64;
            ys.iter().enumerate().map(|(i, &y)| (i as f64 / last, y)).collect()
        };
        for (lang, ys) in lines {
            let i = languages.iter().position(|l| *l == lang).unwrap_or(0);
            let c = if legend { Palette99::pick(i).to_rgba() } else { RGBColor(170, 170, 170).to_rgba() };
            let s = chart
                .draw_series(LineSeries::new(depth(ys), c.stroke_width(if legend { 2 } else { 1 })))
                .map_err(err)?;
            if legend && k == 0 {
                s.label(lang.clone()).legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
            }
        }
        let layers = lines.iter().map(|l| l.1.len()).max().unwrap_or(0);
        let mean: Vec<f64> = (0..layers)
            .map(|l| {
                let v: Vec<f64> = lines.iter().filter_map(|x| x.1.get(l)).copied().collect();
                v.iter().sum::<f64>() / v.len().max(1) as f64
            })
            .collect();
        let s = chart.draw_series(LineSeries::new(depth(&mean), BLACK.stroke_width(3))).map_err(err)?;
        if k == 0 {
            s.label("mean over languages")
                .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.stroke_width(3)));
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .label_font(("sans-serif", 11))
                .position(SeriesLabelPosition::UpperLeft)
                .draw()
                .map_err(err)?;
        }
    }
    Ok(())
}

/// A calibration plot: each series' (predicted, measured) points over [0, 1] × [0, 1], with
/// the diagonal of perfect prediction; `series` are (name, points).
pub fn calibration<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    series: &[(String, Vec<(f64, f64)>)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(55)
        .build_cartesian_2d(0f64..1f64, 0f64..1f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("predicted accuracy (language left out)")
        .y_desc("measured accuracy")
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    chart
        .draw_series(LineSeries::new([(0.0, 0.0), (1.0, 1.0)], RGBColor(150, 150, 150).stroke_width(1)))
        .map_err(err)?;
    const COLOURS: [RGBColor; 4] =
        [RGBColor(200, 60, 60), RGBColor(33, 102, 172), RGBColor(40, 150, 70), RGBColor(150, 150, 150)];
    for (i, (name, pts)) in series.iter().enumerate() {
        let c = COLOURS.get(i).map_or_else(|| Palette99::pick(i).to_rgba(), |c| c.to_rgba());
        let inside: Vec<(f64, f64)> =
            pts.iter().filter(|p| p.0.is_finite() && p.1.is_finite()).map(|p| (p.0.clamp(0.0, 1.0), p.1)).collect();
        chart
            .draw_series(inside.iter().map(|&p| Circle::new(p, 4, c.filled())))
            .map_err(err)?
            .label(name.clone())
            .legend(move |(x, y)| Circle::new((x + 8, y), 4, c.filled()));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::UpperLeft)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// One line per language across hidden states.
pub fn curves<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    y_desc: &str,
    lines: &[(String, Vec<f64>)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let layers = lines.iter().map(|l| l.1.len()).max().unwrap_or(1);
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0f64..(layers.saturating_sub(1)).max(1) as f64, 0f64..1f64)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("hidden state")
        .y_desc(y_desc)
        // Hidden states are whole numbers: at most one tick per state, none between.
        .x_labels(layers.min(13))
        .x_label_formatter(&|x| if x.fract() == 0.0 { format!("{x:.0}") } else { String::new() })
        .label_style(("sans-serif", 12))
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    for (i, (lang, ys)) in lines.iter().enumerate() {
        let c = Palette99::pick(i).to_rgba();
        chart
            .draw_series(LineSeries::new(ys.iter().enumerate().map(|(x, &y)| (x as f64, y)), c.stroke_width(2)))
            .map_err(err)?
            .label(lang.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], c.stroke_width(2)));
    }
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .label_font(("sans-serif", 12))
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(err)?;
    Ok(())
}

/// A run's timeline: one bar per node from its start to its end (seconds since the run
/// began), coloured by stage; `bars` are (label, stage, start, end).
pub fn timeline<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    title: &str,
    bars: &[(String, String, f64, f64)],
) -> Result<()> {
    root.fill(&WHITE).map_err(err)?;
    let end = bars.iter().map(|b| b.3).fold(1.0f64, f64::max);
    let n = bars.len().max(1);
    let label_w = bars.iter().map(|b| b.0.chars().count()).max().unwrap_or(4).min(48) as u32 * 7 + 16;
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(label_w)
        .build_cartesian_2d(0f64..end * 1.02, -0.5f64..n as f64 - 0.5)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("seconds since the run began")
        .y_labels(0)
        .label_style(("sans-serif", 12))
        .disable_y_mesh()
        .light_line_style(RGBColor(235, 235, 235))
        .draw()
        .map_err(err)?;
    let mut stages: Vec<&str> = Vec::new();
    for b in bars {
        if !stages.contains(&b.1.as_str()) {
            stages.push(&b.1);
        }
    }
    for (i, (_, stage, start, stop)) in bars.iter().enumerate() {
        let c = Palette99::pick(stages.iter().position(|s| s == stage).unwrap_or(0)).to_rgba();
        let y = (n - 1 - i) as f64;
        // The node's label left of its row (drawn on the root: it sits outside the plot area).
        let (px, py) = chart.backend_coord(&(0.0, y));
        use plotters::style::text_anchor::{HPos, Pos, VPos};
        let style = TextStyle::from(("sans-serif", 12).into_font()).pos(Pos::new(HPos::Right, VPos::Center));
        let label: String = bars[i].0.chars().take(48).collect();
        root.draw(&Text::new(label, (px - 6, py), style)).map_err(err)?;
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(*start, y + 0.15), (stop.max(start + end * 0.002), y + 0.85)],
                c.filled(),
            )))
            .map_err(err)?;
    }
    Ok(())
}
