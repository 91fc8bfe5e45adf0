//! bf16 rounding in software: what the bf16 products do to their inputs, for packing paths
//! without a vector conversion and for references in tests.

/// `x` rounded to bf16 (nearest, ties to even), as its 16 bits: the conversion
/// `vcvtne2ps2bf16` makes, so the scalar and vector packings agree bit for bit. As that
/// instruction does, a denormal becomes a zero of its sign and a NaN stays a (quiet) NaN.
pub fn bf16_bits(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    if bits & 0x7F80_0000 == 0 {
        return ((bits >> 16) & 0x8000) as u16;
    }
    let rounded = bits.wrapping_add(0x7FFF + ((bits >> 16) & 1));
    (rounded >> 16) as u16
}

/// `x` rounded to bf16 and widened back to f32 (exactly): the value a bf16 product uses.
pub fn round_bf16(x: f32) -> f32 {
    f32::from_bits(u32::from(bf16_bits(x)) << 16)
}
