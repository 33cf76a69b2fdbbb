// Pixel plumbing between what a GPU readback hands over and what the wire wants: float16
// conversion, dropping or adding components (Unity has no 3-channel half texture format, the
// `normals` channel is 3 x float16), and flipping rows (Unity textures start at the bottom row,
// the protocol's row 0 is the top of the screen).
using System;
using System.Runtime.InteropServices;

namespace Neurender.Core
{
    public static class Half
    {
        /// <summary>IEEE 754 binary16 bits of v, rounded to nearest even; overflow gives infinity, NaN stays NaN.</summary>
        public static ushort FromFloat(float v)
        {
            uint f = (uint)BitConverter.ToInt32(BitConverter.GetBytes(v), 0);
            uint sign = (f >> 16) & 0x8000;
            int exp = (int)((f >> 23) & 0xff);
            uint mant = f & 0x7fffff;
            if (exp == 0xff) return (ushort)(sign | 0x7c00 | (mant != 0 ? 0x200u : 0u));
            int e = exp - 127 + 15;
            if (e >= 0x1f) return (ushort)(sign | 0x7c00);
            if (e <= 0)
            {
                if (e < -10) return (ushort)sign; // below half the smallest subnormal
                mant |= 0x800000;
                int shift = 14 - e;
                uint sub = mant >> shift;
                uint rem = mant & ((1u << shift) - 1), halfway = 1u << (shift - 1);
                if (rem > halfway || (rem == halfway && (sub & 1) != 0)) sub++;
                return (ushort)(sign | sub);
            }
            uint h = sign | ((uint)e << 10) | (mant >> 13);
            uint r = mant & 0x1fff;
            if (r > 0x1000 || (r == 0x1000 && (h & 1) != 0)) h++; // may carry into the exponent: correct
            return (ushort)h;
        }

        public static float ToFloat(ushort h)
        {
            int sign = (h >> 15) & 1, exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
            float v;
            if (exp == 0) v = mant * (1f / 16777216f); // 2^-24
            else if (exp == 0x1f) v = mant != 0 ? float.NaN : float.PositiveInfinity;
            else v = (float)((1 + mant / 1024.0) * Math.Pow(2, exp - 15));
            return sign != 0 ? -v : v;
        }
    }

    public static class PixelCopy
    {
        /// <summary>Copies a (height, width, srcComponents) image of elemSize-byte values into a
        /// (height, width, dstComponents) one: extra source components are dropped, missing ones
        /// filled with `fill` (elemSize bytes). flipY reverses the row order.</summary>
        public static void Repack(byte[] src, int srcOffset, int width, int height, int srcComponents,
                                  byte[] dst, int dstOffset, int dstComponents, int elemSize, bool flipY, byte[] fill = null)
        {
            int srcPx = srcComponents * elemSize, dstPx = dstComponents * elemSize;
            long need = (long)width * height;
            if (srcOffset < 0 || src.Length - srcOffset < need * srcPx) throw new ArgumentException("source smaller than the image");
            if (dstOffset < 0 || dst.Length - dstOffset < need * dstPx) throw new ArgumentException("destination smaller than the image");
            if (fill != null && fill.Length != elemSize) throw new ArgumentException("fill must be one element");
            int common = Math.Min(srcPx, dstPx);
            for (int y = 0; y < height; y++)
            {
                int sy = flipY ? height - 1 - y : y;
                int s = srcOffset + sy * width * srcPx, d = dstOffset + y * width * dstPx;
                if (srcPx == dstPx) { Buffer.BlockCopy(src, s, dst, d, width * srcPx); continue; }
                for (int x = 0; x < width; x++, s += srcPx, d += dstPx)
                {
                    Buffer.BlockCopy(src, s, dst, d, common);
                    for (int k = common; k < dstPx; k += elemSize)
                    {
                        if (fill != null) Buffer.BlockCopy(fill, 0, dst, d + k, elemSize);
                        else Array.Clear(dst, d + k, elemSize);
                    }
                }
            }
        }

        /// <summary>Repack straight into the session's shared memory (input slot channel).</summary>
        public static void RepackToChannel(Session session, int slot, string channel, byte[] src, int srcComponents, bool flipY, byte[] scratch = null)
        {
            ChannelInfo c = session.Channel(channel);
            int elem = ElementSize(c.Dtype);
            int n = (int)c.Nbytes;
            byte[] tmp = scratch != null && scratch.Length >= n ? scratch : new byte[n];
            Repack(src, 0, session.Width, session.Height, srcComponents, tmp, 0, c.Components, elem, flipY);
            Marshal.Copy(tmp, 0, session.ChannelPointer(slot, channel), n);
        }

        public static int ElementSize(string dtype)
        {
            switch (dtype)
            {
                case "uint8": return 1;
                case "uint16": case "float16": return 2;
                case "float32": return 4;
                default: throw new ArgumentException($"unknown dtype '{dtype}'");
            }
        }
    }
}
