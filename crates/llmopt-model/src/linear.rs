//! `Linear`: the one type for every projection. Its weight is a row-major matrix in any format of the
//! format table, borrowed from the model file's map or owned; optimization passes swap the weight
//! (found by its GGUF tensor name) and the decoder never changes.

use std::sync::Arc;

use llmopt_kernels::{huge::HugeBytes, matmul_many, Isa, PackedWeight, ThreadPool, WeightView};
use llmopt_tensor::GgmlType;

use crate::ModelError;

/// Bytes that live as long as some owner (a memory-mapped file or a vector).
#[derive(Clone)]
pub struct Bytes {
    owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
    start: usize,
    len: usize,
}

impl std::fmt::Debug for Bytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Bytes({} bytes)", self.len)
    }
}

impl Bytes {
    /// A range of an owner's bytes; fails when the range is out of bounds.
    pub fn slice_of(
        owner: Arc<dyn AsRef<[u8]> + Send + Sync>,
        start: usize,
        len: usize,
    ) -> Option<Self> {
        let total = (*owner).as_ref().len();
        (start.checked_add(len)? <= total).then_some(Self { owner, start, len })
    }

    /// All of an owner's bytes.
    pub fn whole(owner: Arc<dyn AsRef<[u8]> + Send + Sync>) -> Self {
        let len = (*owner).as_ref().len();
        Self { owner, start: 0, len }
    }

    /// Takes ownership of a vector.
    pub fn from_vec(v: Vec<u8>) -> Self {
        Self::whole(Arc::new(v))
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.start..self.start + self.len]
    }
}

/// A row-major matrix of `rows` rows of `cols` values in format `ty`, and optionally the same
/// rows repacked for the kernels ([`Weight::pack`]; the library never packs on its own, the CLI
/// packs at load unless `--no-repack`).
///
/// Replacing a weight never runs on stale packed data: a new `Weight` (from [`Weight::new`])
/// starts unpacked, so assigning `linear.weight = ...` drops the old packed form (call
/// [`Weight::pack`] on the new one to get it back); and if the public fields are changed in
/// place, the packed form no longer matches the view's type, shape and bytes and the kernels
/// ignore it (it keeps its source bytes alive, so a byte range cannot be reused by other data).
#[derive(Clone, Debug)]
pub struct Weight {
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub data: Bytes,
    packed: Option<Packed>,
}

/// A packed form and the bytes it was built from (held so their address stays theirs).
#[derive(Clone, Debug)]
struct Packed {
    _src: Bytes,
    packed: Arc<PackedWeight>,
}

impl Weight {
    /// Checks that `data` holds exactly `rows` rows of `cols` values of `ty`.
    pub fn new(
        name: &str,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: Bytes,
    ) -> Result<Self, ModelError> {
        let row_bytes = ty
            .row_bytes(cols)
            .map_err(|e| ModelError::BadTensor { name: name.into(), reason: e.to_string() })?;
        if row_bytes * rows != data.as_slice().len() {
            return Err(ModelError::BadTensor {
                name: name.into(),
                reason: format!("{} bytes for {rows}x{cols} {}", data.as_slice().len(), ty.name()),
            });
        }
        Ok(Self { ty, rows, cols, data, packed: None })
    }

    /// Builds the 8-row interleaved form the fastest kernels read ([`PackedWeight`]) where this
    /// CPU has them for `ty` (else leaves the weight as is); returns whether the weight is packed.
    /// Costs about as much memory as the weight (the plain rows stay for other readers).
    pub fn pack(&mut self) -> bool {
        Self::pack_many(&mut [self]) == 1
    }

    /// [`Weight::pack`] for each of `ws`, their packed bytes one after another in one mapping on
    /// huge pages ([`PackedWeight::new_many`]), in the order given; returns how many were packed.
    /// The weights without a packed form (formats without packed kernels here: INT8_PC, MXFP8,
    /// W8A8 and the K-quants without VNNI, ...) are copied onto huge pages in the same order,
    /// which their decode reads as it reads packed ones (on 4 KiB pages, a TLB walk per page).
    pub fn pack_many(ws: &mut [&mut Weight]) -> usize {
        let views: Vec<WeightView<'_>> =
            ws.iter().map(|w| WeightView::new(w.ty, w.rows, w.cols, w.data.as_slice())).collect();
        let packed = PackedWeight::new_many(Isa::best(), &views);
        drop(views);
        for (w, p) in ws.iter_mut().zip(packed) {
            w.packed = p.map(|p| Packed { _src: w.data.clone(), packed: Arc::new(p) });
        }
        let plain: Vec<usize> = (0..ws.len()).filter(|&i| !ws[i].is_packed()).collect();
        let lens: Vec<usize> = plain.iter().map(|&i| ws[i].data.as_slice().len()).collect();
        for (&i, mut h) in plain.iter().zip(HugeBytes::cut(&lens)) {
            h.as_mut_slice().copy_from_slice(ws[i].data.as_slice());
            ws[i].data = Bytes::whole(Arc::new(h));
        }
        ws.iter().filter(|w| w.is_packed()).count()
    }

    /// Drops the packed form.
    pub fn unpack(&mut self) {
        self.packed = None;
    }

    /// Whether a packed form exists and still matches the fields.
    pub fn is_packed(&self) -> bool {
        let v = self.view();
        v.packed.is_some_and(|p| p.matches(&v))
    }

    /// A borrowed view for the kernels.
    pub fn view(&self) -> WeightView<'_> {
        WeightView {
            packed: self.packed.as_ref().map(|p| &*p.packed),
            ..WeightView::new(self.ty, self.rows, self.cols, self.data.as_slice())
        }
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.data.as_slice().len() / self.rows.max(1)
    }

    /// Dequantizes row `r` into `out` (`cols` values).
    pub fn dequantize_row(&self, r: usize, out: &mut [f32]) -> Result<(), ModelError> {
        let rb = self.row_bytes();
        let bytes = self
            .data
            .as_slice()
            .get(r * rb..(r + 1) * rb)
            .ok_or(ModelError::TokenOutOfRange { token: r as u64, vocab: self.rows })?;
        self.ty
            .to_f32(bytes, &mut out[..self.cols])
            .map_err(|e| ModelError::BadTensor { name: "row".into(), reason: e.to_string() })
    }

    /// Bytes of the whole matrix.
    pub fn n_bytes(&self) -> usize {
        self.data.as_slice().len()
    }
}

/// `y = x W^T + b` for a batch of rows of `x`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// GGUF name of the weight (`blk.7.attn_q.weight`).
    pub name: String,
    pub weight: Weight,
    pub bias: Option<Vec<f32>>,
}

impl Linear {
    /// Input width.
    pub fn in_features(&self) -> usize {
        self.weight.cols
    }

    /// Output width.
    pub fn out_features(&self) -> usize {
        self.weight.rows
    }

    /// `ys[k][t] = W_k x[t] + b_k` for Linears sharing one input (Q/K/V, gate/up): the input is
    /// quantized once and all the products run in one parallel region. Equal to calling
    /// [`Linear::forward`] on each, bit for bit.
    pub fn forward_many<const N: usize>(
        pool: &ThreadPool,
        lins: [&Linear; N],
        x: &[f32],
        n_tok: usize,
        scratch: &mut Vec<u8>,
        ys: &mut [&mut [f32]; N],
    ) -> Result<(), ModelError> {
        let Some(first) = lins.first() else { return Ok(()) };
        let x = &x[..n_tok * first.in_features()];
        // Arrays, not vectors: the decode loop allocates nothing.
        let views = lins.map(|l| l.weight.view());
        let mut k = 0;
        let mut outs = ys.each_mut().map(|y| {
            let rows = lins[k].out_features();
            k += 1;
            &mut y[..n_tok * rows]
        });
        matmul_many(pool, &views, x, n_tok, scratch, &mut outs).map_err(|e| {
            let names: Vec<&str> = lins.iter().map(|l| l.name.as_str()).collect();
            ModelError::Kernel { name: names.join(", "), reason: e.to_string() }
        })?;
        for (l, y) in lins.iter().zip(outs) {
            l.add_bias(y);
        }
        Ok(())
    }

    fn add_bias(&self, y: &mut [f32]) {
        if let Some(b) = &self.bias {
            for row in y.chunks_exact_mut(self.out_features()) {
                for (v, &bb) in row.iter_mut().zip(b) {
                    *v += bb;
                }
            }
        }
    }

    /// `y[t] = W x[t] + b` for `n_tok` rows; `scratch` holds the quantized activations.
    pub fn forward(
        &self,
        pool: &ThreadPool,
        x: &[f32],
        n_tok: usize,
        scratch: &mut Vec<u8>,
        y: &mut [f32],
    ) -> Result<(), ModelError> {
        Self::forward_many(pool, [self], x, n_tok, scratch, &mut [y])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(ty: GgmlType, rows: usize, cols: usize) -> Weight {
        let x: Vec<f32> = (0..rows * cols).map(|i| ((i * 37) % 101) as f32 / 50.0 - 1.0).collect();
        let mut b = vec![0u8; rows * ty.row_bytes(cols).unwrap()];
        ty.rows_from_f32(&x, &mut b, cols).unwrap();
        Weight::new("w", ty, rows, cols, Bytes::from_vec(b)).unwrap()
    }

    #[test]
    fn packing_copies_the_weights_it_cannot_pack_with_their_bytes() {
        // Q8_0 packs where this CPU has packed kernels for it; INT8_PC never packs.
        let (mut q8, mut pc) = (weight(GgmlType::Q8_0, 16, 64), weight(GgmlType::INT8_PC, 16, 64));
        let (q8_bytes, pc_bytes) = (q8.data.as_slice().to_vec(), pc.data.as_slice().to_vec());
        let (q8_at, pc_at) = (q8.data.as_slice().as_ptr(), pc.data.as_slice().as_ptr());
        let k = llmopt_kernels::Kernels::get(Isa::best()).unwrap();
        assert!(!k.has_packed(GgmlType::INT8_PC));
        let can_pack = k.has_packed(GgmlType::Q8_0);
        assert_eq!(Weight::pack_many(&mut [&mut q8, &mut pc]), usize::from(can_pack));
        assert!(!pc.is_packed());
        // The plain weight now reads a copy; a packed one keeps its source (the packed form
        // checks it), and an unpacked Q8_0 (no packed kernels here) is copied like INT8_PC.
        assert_ne!(pc.data.as_slice().as_ptr(), pc_at);
        assert_eq!(pc.data.as_slice(), pc_bytes);
        assert_eq!(q8.data.as_slice(), q8_bytes);
        assert_eq!(q8.data.as_slice().as_ptr() == q8_at, can_pack);
    }
}
