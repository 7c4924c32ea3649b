"""Checkpoints from URLs and paths, through every loader the package touches,
load with the weights-only unpickler: a crafted file's code never runs. URLs
are served from 127.0.0.1 and cached under a temporary TORCH_HOME."""
import os
import runpy
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.runner import Runner, load_checkpoint
from mmengine.runner import checkpoint as mmengine_checkpoint

from mmpoolformer import PoolFormer, PoolFormerV2
from helpers.checkout import TOOLS, checkout_env
from mmpoolformer.testing import (official_metaformer_state, randomise,
                                  timm_metaformer)
from mmpoolformer.weights import (CheckpointFormatError, convert,
                                  load_pretrained, read_checkpoint)


class Payload:
    """Pickles as a call that creates the file ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, 'w')


class Server:
    """An HTTP server on 127.0.0.1 serving ``files`` (URL path -> bytes),
    counting GETs per path; a file is sent in 20 chunks ``delay`` seconds
    apart, and ``during`` (if set) is called half-way through."""

    def __init__(self):
        self.files, self.gets = {}, {}
        self.delay, self.during = 0.0, None
        server = self

        class Handler(BaseHTTPRequestHandler):

            def do_GET(self):
                body = server.files.get(self.path)
                server.gets[self.path] = server.gets.get(self.path, 0) + 1
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header('Content-Length', str(len(body)))
                self.end_headers()
                step = -(-len(body) // 20)
                for i in range(0, len(body), step):
                    if i and server.delay:
                        threading.Event().wait(server.delay)
                    if server.during and i >= len(body) // 2 > i - step:
                        server.during()
                    self.wfile.write(body[i:i + step])

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(('127.0.0.1', 0), Handler)
        self.httpd.timeout = 10
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       daemon=True)
        self.thread.start()

    def serve(self, name, path):
        """The URL of the file ``path``, served as ``/<name>``."""
        with open(path, 'rb') as f:
            self.files['/' + name] = f.read()
        return f'http://127.0.0.1:{self.httpd.server_port}/{name}'

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(10)


@pytest.fixture
def server():
    srv = Server()
    yield srv
    srv.close()


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """torch's hub cache in a temporary folder (here and in subprocesses):
    its ``checkpoints`` folder."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    monkeypatch.setattr(torch.hub, '_hub_dir', None)
    return tmp_path / 'torch_home' / 'hub' / 'checkpoints'


@pytest.fixture
def evil(tmp_path, server, hub, monkeypatch):
    """(marker, local path, URL) of a checkpoint that would load as
    PoolFormer s12 weights, and create ``marker``, if it were unpickled in
    full. torch.load's default is made the full unpickler, as before torch
    2.6: the package's own reader (mmpoolformer.safeload) protects."""
    monkeypatch.setenv('TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD', '1')
    marker = tmp_path / 'pwned'
    path = tmp_path / 'evil.pth'
    torch.save({'state_dict': PoolFormer('s12').state_dict(),
                'x': Payload(marker)}, path)
    yield marker, str(path), server.serve('evil.pth', path)
    assert not marker.exists(), 'the payload ran'


@pytest.fixture(params=['path', 'url'])
def evil_source(request, evil):
    marker, path, url = evil
    return path if request.param == 'path' else url


REFUSED = r'Refused .*evil\.pth: the file names io\.open, which is ' \
    r'neither a tensor nor plain data'


@pytest.mark.parametrize('cls', [PoolFormer, PoolFormerV2])
def test_init_cfg_refuses_payload(evil_source, cls):
    model = cls('s12', init_cfg=dict(type='Pretrained',
                                     checkpoint=evil_source))
    with pytest.raises(CheckpointFormatError, match=REFUSED):
        model.init_weights()


def test_pretrained_refuses_payload(evil_source):
    with pytest.warns(UserWarning, match='deprecated'):
        model = PoolFormer('s12', pretrained=evil_source)
    with pytest.raises(CheckpointFormatError, match=REFUSED):
        model.init_weights()


def test_convert_tool_refuses_payload(evil_source, tmp_path):
    tool = runpy.run_path(os.path.join(TOOLS, 'convert_weights.py'))
    with pytest.raises(CheckpointFormatError, match=REFUSED):
        tool['main']([evil_source, str(tmp_path / 'out.pth')])
    assert not (tmp_path / 'out.pth').exists()


def test_mmengine_load_checkpoint_refuses_payload(evil_source):
    """mmengine's loader (init_model, inferencers, mmpoolformer.analysis)."""
    with pytest.raises(Exception, match=r'names io\.open, which is neither'):
        load_checkpoint(PoolFormer('s12'), evil_source, map_location='cpu')


def test_model_zoo_name_refuses_payload(evil, monkeypatch):
    """torchvision:// names resolve to URLs, read as those."""
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models',
                        lambda: dict(evil=evil[2]))
    with pytest.raises(Exception, match=r'names io\.open, which is neither'):
        load_checkpoint(PoolFormer('s12'), 'torchvision://evil')


class Net(nn.Module):
    """A model for a Runner that only loads checkpoints."""

    def __init__(self):
        super().__init__()
        self.backbone = PoolFormer('s12', out_indices=(0, ))


def runner(tmp_path, load_from, resume):
    return Runner(model=Net(), work_dir=str(tmp_path / 'work'),
                  load_from=load_from, resume=resume,
                  experiment_name=f'safe_{os.getpid()}_{id(tmp_path)}')


@pytest.mark.parametrize('resume', [False, True], ids=['load_from',
                                                       'resume'])
def test_runner_refuses_payload(tmp_path, evil_source, resume):
    """``load_from=`` and ``--resume CHECKPOINT`` (which tools/train.py
    turns into ``resume=True, load_from=CHECKPOINT``)."""
    with pytest.raises(Exception, match=r'names io\.open, which is neither'):
        runner(tmp_path, evil_source, resume).load_or_resume()


def test_benign_checkpoints_over_http(tmp_path, server, hub):
    src = randomise(PoolFormer('s12'))
    plain = tmp_path / 'plain.pth'
    torch.save(src.state_dict(), plain)
    url = server.serve('releases/v1/plain.pth', plain)
    model = PoolFormer('s12', init_cfg=dict(type='Pretrained',
                                            checkpoint=url))
    model.init_weights()
    for k, v in src.state_dict().items():
        assert torch.equal(model.state_dict()[k], v), k
    # cached under the URL's path: a second reader does not download
    assert (hub / 'releases_v1_plain.pth').is_file()
    load_pretrained(PoolFormer('s12'), url, convert)
    assert server.gets['/releases/v1/plain.pth'] == 1

    # an mmengine checkpoint (numpy values in meta) through load_from
    net = randomise(Net())
    full = tmp_path / 'epoch_1.pth'
    torch.save({'meta': {'epoch': 1, 'seed': np.int64(7)},
                'state_dict': net.state_dict()}, full)
    r = runner(tmp_path, server.serve('epoch_1.pth', full), False)
    r.load_or_resume()
    for k, v in net.state_dict().items():
        assert torch.equal(r.model.state_dict()[k], v), k


def test_safetensors_over_http(tmp_path, server, hub):
    from safetensors.torch import save_file
    src = randomise(PoolFormer('s12'))
    path = tmp_path / 'model.safetensors'
    save_file(src.state_dict(), str(path))
    url = server.serve('org/s12/model.safetensors', path)
    model = PoolFormer('s12')
    load_pretrained(model, url, convert)
    assert torch.equal(model.stem.weight, src.stem.weight)
    assert (hub / 'org_s12_model.safetensors').is_file()


READER = '''
import glob, os, sys, time
from mmpoolformer.weights import read_checkpoint
url, ready = sys.argv[1:]
open(f'{ready}.{os.getpid()}', 'w').close()
end = time.time() + 120
while len(glob.glob(ready + '.*')) < 2 and time.time() < end:
    time.sleep(0.01)
state = read_checkpoint(url)
print(repr(sum(float(v.double().sum()) for v in state.values())))
'''


@pytest.mark.integration
def test_two_processes_download_once(tmp_path, server, hub):
    """Two ranks starting together: one download, and neither reads the
    file before it is complete (it appears under its name only whole)."""
    src = randomise(PoolFormer('s12'))
    path = tmp_path / 'shared.pth'
    torch.save(src.state_dict(), path)
    url = server.serve('shared.pth', path)
    seen = []
    server.delay = 0.05  # 1 s per download: the second reader waits
    server.during = lambda: seen.append(
        (hub / 'shared.pth').exists())
    procs = [subprocess.Popen(
        [sys.executable, '-c', READER, url, str(tmp_path / 'ready')],
        env=checkout_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True)
        for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (out, err) in zip(procs, outs):
        assert p.returncode == 0, err
    expected = sum(float(v.double().sum()) for v in src.state_dict().values())
    assert [float(out) for out, _ in outs] == [expected, expected]
    assert server.gets['/shared.pth'] == 1
    assert seen == [False]
    assert sorted(os.listdir(hub)) == ['shared.pth', 'shared.pth.lock']


@pytest.mark.parametrize('layout', ['official', 'timm'])
@pytest.mark.parametrize('name,family', [
    ('poolformerv2_s12', 'PoolFormerV2 or IdentityFormer'),
    ('convformer_s18', 'ConvFormer')])
def test_metaformer_weights_into_poolformer(tmp_path, layout, name,
                                            family):
    state = timm_metaformer(name).state_dict()
    if layout == 'official':
        state = official_metaformer_state(state)
    path = tmp_path / f'{name}.pth'
    torch.save(state, path)
    with pytest.raises(CheckpointFormatError) as info:
        load_pretrained(PoolFormer('s12'), str(path), convert)
    message = str(info.value)
    assert f'MetaFormer-baseline weights ({layout} layout)' in message
    assert f'read them with type {family}' in message
    assert len(message) < 300, message


def test_map_location_is_passed_to_the_loader(tmp_path):
    src = randomise(PoolFormer('s12'))
    path = tmp_path / 's12.pth'
    torch.save(src.state_dict(), path)
    places = []

    def where(storage, location):
        places.append(location)
        return storage

    model = PoolFormer('s12', init_cfg=dict(
        type='Pretrained', checkpoint=str(path), map_location=where))
    model.init_weights()
    assert len(places) == len(src.state_dict()) and set(places) == {'cpu'}
    assert torch.equal(model.stem.weight, src.stem.weight)
    state = read_checkpoint(str(path), map_location='meta')
    assert all(v.is_meta for v in state.values())


def test_map_location_for_safetensors_is_a_device(tmp_path):
    from safetensors.torch import save_file
    path = tmp_path / 's12.safetensors'
    save_file(PoolFormer('s12').state_dict(), str(path))
    with pytest.raises(CheckpointFormatError,
                       match='map_location for a .safetensors file must be '
                       'a device or None'):
        load_pretrained(PoolFormer('s12'), str(path), convert,
                        map_location=lambda s, loc: s)
