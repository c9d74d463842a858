# python benchmarks/denoise_cli.py photo ../shared/datasets/PolyU/OriginalImages/Canon5D2_bag_Real.JPG --out /tmp/d
# python benchmarks/denoise_cli.py big ../shared/datasets/PolyU/OriginalImages/Nikon800_door_Real.JPG --out /tmp/b
# python benchmarks/denoise_cli.py folder ../shared/datasets/PolyU/OriginalImages --out /tmp/f --crop 512
"""The own-photos command (``tools/denoise.py`` = ``lan-denoise``) run as a user runs it, timed from outside.

``photo``: one photo with the default settings (plus any arguments after ``--``): wall and CPU seconds, peak RSS of
the command's process (``getrusage`` of the finished child), and, when the photo is a PolyU ``*_Real`` original with
its ``*_mean`` next to it, PSNR/SSIM of the noisy input and of the output against it (the official float scoring,
whole image); a crop strip noisy | output | mean (``<out>/crop_*.png``) for looking at.

``big``: a 4000x3000 (12 MP) photo made by mirror-padding the given one, then as ``photo``.

``folder``: a folder whose name has a space, holding a corrupt JPEG sorted first and two 4:3 centre crops
(``--crop`` px wide, default 1024: 0.8 MP) of photos from the given folder (one with a non-ASCII name): the command
is killed (SIGKILL) once the first photo is done, then run again; prints both runs' output and checks the second
run's summary (1 failed, 1 skipped, 1 done; exit status 1).

Nothing made here is committed (PolyU's licence): use an ``--out`` outside the repository.
"""
import argparse
import glob
import os
import re
import resource
import signal
import subprocess
import sys
import time
from os import path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
CLI = [sys.executable, osp.join(ROOT, 'tools', 'denoise.py')]


def timed(cmd, **kwargs):
    """Run ``cmd``; ``(returncode, output, wall s, CPU s, peak RSS bytes)`` of that child alone."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kwargs)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return proc.returncode, proc.stdout, wall, cpu, after.ru_maxrss * 1024  # ru_maxrss: KiB, largest child so far


def _last_lines(text, n=12):
    text = re.sub(r'\x1b\[[0-9;]*[A-Za-z]', '', text)  # tqdm's cursor moves (the output is a pipe, not a terminal)
    return '\n'.join(line for line in text.replace('\r', '\n').splitlines()
                     if line.strip() and '%|' not in line)[-4000:].splitlines()[-n:]


def score_against_mean(noisy_path, output_path, crop_prefix):
    """PSNR / SSIM (official: float, RGB, no crop) of the noisy photo and the output vs the ``_mean`` photo."""
    import cv2
    import numpy as np

    import lan_basicsr  # noqa: F401  isort:skip  (before basicsr: the torchvision shim)
    from basicsr.metrics import calculate_psnr, calculate_ssim
    mean_path = noisy_path.replace('_Real.', '_mean.')
    if mean_path == noisy_path or not osp.isfile(mean_path):
        return None
    read = lambda p: cv2.imread(p, cv2.IMREAD_COLOR).astype(np.float64)  # noqa: E731  (BGR: PSNR/SSIM per channel)
    mean, noisy, out = read(mean_path), read(noisy_path), read(output_path)
    scores = {}
    for name, img in (('noisy', noisy), ('output', out)):
        scores[name] = (calculate_psnr(img, mean, 0), calculate_ssim(img, mean, 0))
    h, w = mean.shape[:2]
    for i, (top, left) in enumerate(((h // 2 - 256, w // 2 - 256), (h // 5, w // 5))):
        strip = np.concatenate([x[top:top + 512, left:left + 512] for x in (noisy, out, mean)], axis=1)
        cv2.imwrite(f'{crop_prefix}_{i}_noisy_output_mean.png', strip.astype(np.uint8))
    return scores


def photo(args, path=None):
    path = path or args.path
    os.makedirs(args.out, exist_ok=True)
    cmd = CLI + ['-i', path, '-o', osp.join(args.out, 'denoised')] + args.extra
    print('$ ' + ' '.join(cmd), flush=True)
    code, text, wall, cpu, rss = timed(cmd)
    print('\n'.join(_last_lines(text)))
    print(
        f'exit {code}; wall {wall:.0f} s ({wall / 60:.1f} min), CPU {cpu:.0f} s, peak RSS {rss / 2**30:.2f} GiB '
        f'({os.cpu_count()} cores, OMP_NUM_THREADS={os.environ.get("OMP_NUM_THREADS", "-")})',
        flush=True)
    outputs = sorted(glob.glob(osp.join(args.out, 'denoised', osp.splitext(osp.basename(path))[0] + '_*.png')))
    outputs = [o for o in outputs if not o.endswith('_compare.png')]
    if code == 0 and outputs:
        scores = score_against_mean(path, outputs[0], osp.join(args.out, 'crop'))
        if scores:
            print(f'vs {osp.basename(path).replace("_Real.", "_mean.")}: noisy input {scores["noisy"][0]:.2f} dB / '
                  f'{scores["noisy"][1]:.4f}, output {scores["output"][0]:.2f} dB / {scores["output"][1]:.4f} '
                  f'(crops: {args.out}/crop_*.png)')
    return code


def big(args):
    import cv2
    import numpy as np
    img = cv2.imread(args.path, cv2.IMREAD_COLOR)
    h, w = img.shape[:2]
    H, W = 3000, 4000
    if h > H or w > W:
        img = img[:H, :W]
    img = np.pad(img, ((0, max(0, H - h)), (0, max(0, W - w)), (0, 0)), mode='reflect')
    os.makedirs(args.out, exist_ok=True)
    path = osp.join(args.out, 'photo_12MP.png')
    cv2.imwrite(path, img)
    print(f'{path}: {W}x{H} from {args.path} ({w}x{h}, mirror-padded)')
    return photo(args, path)


def folder(args):
    import cv2
    sources = sorted(glob.glob(osp.join(args.path, '*_Real.JPG')))[:2]
    if len(sources) < 2:
        raise SystemExit(f'{args.path}: need two *_Real.JPG photos')
    work = osp.join(args.out, 'PolyU photos')  # a space in the path
    out = osp.join(args.out, 'denoised folder')
    os.makedirs(work, exist_ok=True)
    with open(sources[0], 'rb') as f:
        data = f.read()
    with open(osp.join(work, '0_corrupt.jpg'), 'wb') as f:
        f.write(data[:len(data) // 3])  # a truncated JPEG, sorted first
    cw = args.crop // 2
    ch = args.crop * 3 // 8
    for i, (src, name) in enumerate(zip(sources, ('1_photo.png', '2_fotó ü.png'))):
        img = cv2.imread(src, cv2.IMREAD_COLOR)
        h, w = img.shape[:2]
        cv2.imwrite(osp.join(work, name), img[h // 2 - ch:h // 2 + ch, w // 2 - cw:w // 2 + cw])
    cmd = CLI + ['-i', work, '-o', out, '--compare'] + args.extra
    print('$ ' + ' '.join(cmd), flush=True)
    log = open(osp.join(args.out, 'first_run.log'), 'w')
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    manifest = osp.join(out, '.lan-denoise.json')
    while proc.poll() is None and not (osp.isfile(manifest) and '1_photo' in open(manifest, encoding='utf-8').read()):
        time.sleep(0.5)
    time.sleep(5)  # into the second photo's adaptation
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    log.close()
    print(f'first run killed (SIGKILL) after {time.perf_counter() - start:.0f} s; its output:')
    print('\n'.join(_last_lines(open(osp.join(args.out, 'first_run.log'), encoding='utf-8').read())))
    print('files:', sorted(os.listdir(out)))
    code, text, wall, cpu, rss = timed(cmd)
    print(f'second run (the same command): exit {code}, wall {wall:.0f} s, peak RSS {rss / 2**30:.2f} GiB; output:')
    print('\n'.join(_last_lines(text)))
    print('files:', sorted(os.listdir(out)))
    ok = code == 1 and '1 done, 1 failed, 1 skipped' in text
    print('check:', 'OK' if ok else 'UNEXPECTED')
    return 0 if ok else 1


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    extra = argv[argv.index('--') + 1:] if '--' in argv else []
    argv = argv[:argv.index('--')] if '--' in argv else argv
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('what', choices=['photo', 'big', 'folder'])
    parser.add_argument('path', help='a photo (photo, big) or a folder of PolyU originals (folder)')
    parser.add_argument('--out', required=True, help='work folder (outside the repository)')
    parser.add_argument('--crop', type=int, default=1024, help='folder: width (px) of the 4:3 centre crops')
    args = parser.parse_args(argv)
    args.extra = extra
    return {'photo': photo, 'big': big, 'folder': folder}[args.what](args)


if __name__ == '__main__':
    sys.exit(main())
